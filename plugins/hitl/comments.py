"""Comments on a request: discussion before deciding. Comments never decide.

Anyone who may read a request may comment (the review page, the JSON API, the CLI). ``@user``
(an Airflow user name) notifies that user through the configured channels: email to their address
(``hitl.identity``: FAB's users, else ``[hitl] user_emails``), once per comment and user, and one
line in the workflow's Slack channel per comment naming everyone it mentions
(``hitl.notify.notify_mention``). Any reader may comment, so mentions are bounded against
amplification: one author notifies one user about one request at most once per
``hitl.notify.MENTION_EVERY`` seconds, and one author tells at most ``hitl.notify.MENTION_BUDGET`` people per
such window across every request (later mentions are recorded on the comment, not sent); mention emails go out
for pending requests only. A name
that is not a known user is left as text and told back to the author (``PostedComment.unknown_mentions``:
the page's message, the API's answer, the CLI's line), so a misspelt ``@name`` is not silently nobody.
Bounded: ``MAX_COMMENT`` characters, ``MAX_MENTIONS``
people, the first ``MAX_NAMES_LOOKED_UP`` distinct names looked up, ``MAX_COMMENTS`` per request and
``MAX_COMMENTS_PER_AUTHOR`` of them per author.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from hitl.decisions import MAX_COMMENT, DecisionError, NotFound
from hitl.identity import Reviewer
from hitl.store import Comment, Store

log = logging.getLogger(__name__)

MAX_MENTIONS = 10  # people one comment may notify
MAX_NAMES_LOOKED_UP = 20  # distinct @names of one comment looked up as users; later ones stay text
MAX_COMMENTS = 200  # comments on one request
MAX_COMMENTS_PER_AUTHOR = 30  # one reader (any Viewer may comment) cannot fill a request's thread for everyone
# ``@name`` not inside a word or an email address; Airflow user names are letters, digits and ``_.-+@``.
MENTION = re.compile(r"(?<![\w@.+-])@([A-Za-z0-9_][A-Za-z0-9_.+-]{0,99})")


@dataclass(frozen=True)
class PostedComment(Comment):
    """A comment just added, with the ``@names`` it holds that are no user (so nobody was told)."""

    unknown_mentions: tuple[str, ...] = ()

    def told(self) -> str:
        """What to add to "comment added" for the author: who was mentioned, and which names are nobody."""
        parts = [f"mentioned {', '.join(self.mentions)}"] if self.mentions else []
        if self.unknown_mentions:
            names = ", ".join(f"@{n}" for n in self.unknown_mentions)
            parts.append(f"no user {names}: not notified (left as text)")
        return "".join(f"; {p}" for p in parts)


class CommentRefused(DecisionError):
    """An empty, too long or one-too-many comment (400)."""

    code = "bad_comment"


def mentioned_names(body: str) -> list[str]:
    """The ``@names`` in a comment, in order, once each (a trailing full stop is punctuation)."""
    names = [m.group(1).rstrip(".-+") for m in MENTION.finditer(body)]
    return list(dict.fromkeys(n for n in names if n))


def known_user(name: str, dag_id: str) -> Reviewer | None:
    """The Airflow user called ``name``, asked of the auth manager (may they read ``dag_id``?), or None."""
    from hitl.airflow_users import reviewer_named

    return reviewer_named(name, [dag_id])


def add_comment(
    store: Store, request_id: int, author: Reviewer, body: object, *, channel: str = "api"
) -> PostedComment:
    """Record a comment on ``request_id`` by ``author`` and notify the users it mentions. Never decides."""
    req = store.get(request_id)
    if req is None or not author.may_read(req.dag_id):  # a DAG Airflow hides from the author: no such request
        raise NotFound(f"no approval request {request_id}")
    if not isinstance(body, str):
        raise CommentRefused("the comment must be text")
    text = body.replace("\r\n", "\n").strip()
    if not text:
        raise CommentRefused("the comment is empty")
    if len(text) > MAX_COMMENT:
        raise CommentRefused(f"the comment is too long ({len(text)} characters; at most {MAX_COMMENT})")
    if "\x00" in text:
        raise CommentRefused("the comment must not contain NUL characters")
    people: list[Reviewer] = []
    unknown: list[str] = []
    for name in mentioned_names(text)[:MAX_NAMES_LOOKED_UP]:  # each may be a user lookup: bounded
        if len(people) >= MAX_MENTIONS:
            break
        if name == author.name:
            continue
        user = known_user(name, req.dag_id)
        if user is not None and user.may_read(req.dag_id):  # never tell a request to whom Airflow hides its DAG
            people.append(user)
        else:
            unknown.append(name)
    comment = store.add_comment(
        req.id,
        author.name,
        text,
        [p.name for p in people],
        max_per_request=MAX_COMMENTS,
        max_per_author=MAX_COMMENTS_PER_AUTHOR,
        channel=channel,
    )
    if comment == "request":
        raise CommentRefused(f"request {req.id} has {MAX_COMMENTS} comments already; no more can be added")
    if isinstance(comment, str):
        raise CommentRefused(f"{author.name} wrote {MAX_COMMENTS_PER_AUTHOR} comments on request {req.id} already")
    if people:
        try:
            from hitl.notify import notify_mention

            notify_mention(req, comment, people, store=store)
        except Exception as exc:  # the comment stands; a channel that is down is logged
            log.warning("hitl: notifying the mentions of comment %s failed: %s", comment.id, exc)
    return PostedComment(**comment.__dict__, unknown_mentions=tuple(unknown))
