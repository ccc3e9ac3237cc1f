"""``make demo`` over an older demo's home: the stack's setup upgrades its store and says where it backed it up."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from hitl.store import Store
from hitl.store.migrate import script_directory
from hitl_devstack import AirflowStack, SetupFailed, free_port
from store_seeds import seed, snapshot

pytestmark = pytest.mark.e2e  # runs Airflow's own `airflow db migrate`

HEAD = script_directory().get_current_head()


def test_setup_upgrades_an_older_demo_store_or_says_which_migration_failed(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir(mode=0o700)
    url = f"sqlite:///{home / 'hitl.db'}"
    store = Store(url)
    store.upgrade("0003")  # the store an earlier `make demo` left
    before = seed(store)
    with store.write_engine.begin() as conn:  # a cause for 0006 to fail
        conn.execute(sa.text("CREATE TABLE hitl_comment (id INTEGER PRIMARY KEY)"))
    store.engine.dispose()
    store.write_engine.dispose()
    stack = AirflowStack(home=home, port=free_port())
    with pytest.raises(SetupFailed) as failed:
        stack.setup()
    assert str(failed.value).startswith(
        "python -m hitl db upgrade: migration 0006 (request changes and comments) failed: "
        "table hitl_comment already exists; the decision store is unchanged (revision 0003; backup: "
    ), str(failed.value)
    with store.write_engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE hitl_comment"))
    store.write_engine.dispose()
    backed_up, at = stack.setup().splitlines()
    assert backed_up.startswith(f"backed up the decision store (revision 0003) to {home / 'hitl.db.backup-0003-'}")
    assert at == f"decision store at revision {HEAD} ({url})"
    after = Store(url)
    assert snapshot(after, like=before) == before
    after.engine.dispose()
