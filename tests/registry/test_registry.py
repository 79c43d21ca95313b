"""The model registry: immutable versions, atomic champion pointer, rollback, locks, watcher."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from cli import main
from nowcast import durability
from nowcast import model_registry as mr
from nowcast.model_registry import (
    ChampionWatcher,
    CorruptModelError,
    LockHeldError,
    ModelRegistry,
    RegistryError,
    UnknownVersionError,
    VersionExistsError,
    load_champion,
    sha256_file,
)


def shift_checkpoint(path: Path, shifts: list[tuple[int, int]] | None = None) -> Path:
    """A valid ``test-shift`` checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"shifts": shifts or [(0, 1)] * 12, "cadence_minutes": 5}))
    return path


@pytest.fixture
def reg(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry.create(tmp_path / "registry")


def test_versions_are_immutable_and_complete(reg: ModelRegistry, tmp_path: Path) -> None:
    ck = shift_checkpoint(tmp_path / "a.json")
    v = reg.register(ck, model="test-shift", version_id="v1", data={"sha256": "abc"}, training={"loss": 0.5})
    m = v.manifest
    assert m["checkpoint_sha256"] == mr.sha256_file(ck)
    assert m["model"] == "test-shift" and m["parent"] is None and m["created"].endswith("Z")
    assert m["data"] == {"sha256": "abc"} and m["training"] == {"loss": 0.5} and m["code_version"]
    assert (Path(reg.url) / "versions/v1/checkpoint").read_bytes() == ck.read_bytes()
    with pytest.raises(VersionExistsError, match="v1 already exists"):
        reg.register(shift_checkpoint(tmp_path / "b.json", [(1, 1)] * 12), model="test-shift", version_id="v1")
    # the first version is untouched by the failed second write
    assert reg.get("v1").checksum == m["checkpoint_sha256"]
    assert mr.sha256_file(Path(reg.url) / "versions/v1/checkpoint") == m["checkpoint_sha256"]
    v2 = reg.register(ck, model="test-shift", parent="v1")
    assert v2.manifest["parent"] == "v1" and v2.version_id != "v1"
    with pytest.raises(UnknownVersionError, match="unknown model version 'nope'"):
        reg.register(ck, model="test-shift", parent="nope")
    # an interrupted upload (no manifest) is not a version
    (Path(reg.url) / "versions/half").mkdir()
    (Path(reg.url) / "versions/half/checkpoint").write_bytes(b"x")
    assert reg.version_ids() == sorted(["v1", v2.version_id])
    assert {v.status for v in reg.list()} == {"candidate"}


def test_promote_retire_rollback(reg: ModelRegistry, tmp_path: Path) -> None:
    for i in (1, 2, 3):
        reg.register(shift_checkpoint(tmp_path / f"{i}.json", [(0, i)] * 12), model="test-shift", version_id=f"v{i}")
    assert reg.champion() is None
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback()
    reg.promote("v1")
    reg.promote("v2")
    st = reg.status()
    assert st.champion == "v2" and st.statuses == {"v1": "retired", "v2": "champion", "v3": "candidate"}
    with pytest.raises(RegistryError, match="already the champion"):
        reg.promote("v2")
    reg.promote("v3")
    assert reg.rollback().version_id == "v2"
    assert reg.rollback().version_id == "v1"
    st = reg.status()
    assert st.champion == "v1" and st.statuses == {"v1": "champion", "v2": "retired", "v3": "retired"}
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback()
    actions = [(e["action"], e["version"]) for e in reg.events() if e["action"] != "register"]
    assert actions == [("promote", "v1"), ("promote", "v2"), ("promote", "v3"), ("rollback", "v2"), ("rollback", "v1")]
    assert load_champion(reg.url).shifts[0] == (0, 1)


def test_corrupt_or_unloadable_checkpoint_is_never_promoted(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.register(shift_checkpoint(tmp_path / "1.json"), model="test-shift", version_id="good")
    reg.promote("good")
    reg.register(shift_checkpoint(tmp_path / "2.json", [(2, 2)] * 12), model="test-shift", version_id="flipped")
    ck = Path(reg.url) / "versions/flipped/checkpoint"
    ck.write_text(ck.read_text().replace("2", "3"))  # bit rot / tampering after registration
    with pytest.raises(CorruptModelError, match="flipped is corrupt"):
        reg.promote("flipped")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")  # checksum is right, the model cannot read it
    reg.register(bad, model="test-shift", version_id="garbage")
    with pytest.raises(CorruptModelError, match="garbage .* cannot be loaded"):
        reg.promote("garbage")
    assert reg.status().champion == "good"
    assert reg.status().statuses["good"] == "champion"
    # a corrupt champion (e.g. storage damage) fails loudly on load, the watcher reports it
    reg.promote("garbage", verify=False)
    with pytest.raises(CorruptModelError):
        load_champion(reg.url)
    (Path(reg.url) / "versions/good/checkpoint").write_text("x")
    w = ChampionWatcher(reg.url)
    reg.rollback(verify=False)
    vid, _ = w.poll()  # the watcher reports the new champion; loading it verifies the checksum
    with pytest.raises(CorruptModelError, match="good is corrupt"):
        reg.load(vid)
    w.mark_failed(vid, "corrupt")
    assert w.poll() is None and w.last_error == "corrupt"


def test_missing_registry_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(RegistryError, match=r"no model registry found .*nowcast models init"):
        ModelRegistry(missing)
    assert not missing.exists()
    assert main(["models", "--registry", str(missing), "list"]) == 2
    err = capsys.readouterr().err
    assert "no model registry found" in err and len(err.strip().splitlines()) == 1
    w = ChampionWatcher(str(missing))
    assert w.poll() is None and "no model registry" in (w.last_error or "")


def test_read_only_registry_changes_nothing(reg: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg.register(shift_checkpoint(tmp_path / "1.json"), model="test-shift", version_id="v1")
    reg.register(shift_checkpoint(tmp_path / "2.json", [(1, 0)] * 12), model="test-shift", version_id="v2")
    reg.promote("v1")
    before = (Path(reg.url) / "status.json").read_bytes()

    def denied(*a: object, **k: object) -> None:
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(durability, "write_atomic", denied)
    monkeypatch.setattr(durability, "write_exclusive", denied)
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(RegistryError, match="registry is not writable"):
        reg.promote("v2")
    with pytest.raises(RegistryError, match="registry is not writable"):
        reg.check_writable()
    with pytest.raises(RegistryError, match="not writable"):
        reg.register(shift_checkpoint(tmp_path / "3.json", [(2, 0)] * 12), model="test-shift", version_id="v3")
    monkeypatch.undo()
    assert (Path(reg.url) / "status.json").read_bytes() == before
    assert reg.status().champion == "v1" and "v3" not in reg.version_ids()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_directory(reg: ModelRegistry, tmp_path: Path) -> None:  # pragma: no cover - not as root
    reg.register(shift_checkpoint(tmp_path / "1.json"), model="test-shift", version_id="v1")
    os.chmod(reg.url, 0o555)
    try:
        with pytest.raises(RegistryError, match="not writable"):
            reg.promote("v1")
    finally:
        os.chmod(reg.url, 0o755)


def test_retrain_lock_is_exclusive_and_expires(reg: ModelRegistry) -> None:
    lock = reg.lock(ttl="1h", owner="job-a")
    info = lock.acquire()
    on_disk = json.loads((Path(reg.url) / "retrain.lock").read_text())
    assert on_disk["owner"] == "job-a" and on_disk["pid"] == os.getpid() and on_disk["host"] and on_disk["expires"] == info.expires
    with pytest.raises(LockHeldError, match=r"held by job-a \(pid \d+ on .*\) until"):
        reg.lock(owner="job-b").acquire()
    old = lock.info.expires
    lock.refresh()
    assert lock.info.expires >= old
    lock.release()
    assert not (Path(reg.url) / "retrain.lock").exists()
    # a crashed job's lock: expired -> broken by the next job
    stale = reg.lock(ttl="1s", owner="crashed")
    stale.acquire()
    stale.info = None  # the process died without releasing
    with pytest.raises(LockHeldError):
        reg.lock(owner="too-early").acquire()
    lk = reg.lock(owner="job-c")
    p = Path(reg.url) / "retrain.lock"
    d = json.loads(p.read_text())
    d["expires"] = (pd.Timestamp.now(tz="UTC") - pd.Timedelta("1min")).isoformat()
    p.write_text(json.dumps(d))
    lk.acquire()
    assert json.loads(p.read_text())["owner"] == "job-c"
    lk.release()


def test_watcher_follows_the_champion(reg: ModelRegistry, tmp_path: Path) -> None:
    w = ChampionWatcher(reg.url)
    assert w.poll() is None  # no champion yet
    reg.register(shift_checkpoint(tmp_path / "1.json"), model="test-shift", version_id="v1")
    reg.register(shift_checkpoint(tmp_path / "2.json", [(3, 3)] * 12), model="test-shift", version_id="v2")
    reg.promote("v1")
    vid, path = w.poll()
    assert vid == "v1" and mr.sha256_file(path) == reg.get("v1").checksum
    assert w.poll() is None
    reg.promote("v2")
    assert w.poll()[0] == "v2"
    w.mark_failed("v2", "boom")  # the service could not load it: keeps v1, does not retry v2
    assert w.current == "v1" and w.poll() is None and w.last_error == "boom"
    reg.rollback()
    assert w.poll() is None  # back to v1, which is serving
    reg.register(shift_checkpoint(tmp_path / "3.json", [(4, 4)] * 12), model="test-shift", version_id="v3")
    reg.promote("v3")
    assert w.poll()[0] == "v3"
    w.mark_failed("v3", "boom again")
    assert w.current == "v1"  # two failures in a row: still the last good one


def test_init_makes_the_shipped_convlstm_the_initial_champion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nowcast.model_registry import ModelRegistry
    from nowcast.models.weights import default_checkpoint, model_card

    url = str(tmp_path / "seeded")
    assert main(["models", "init", url]) == 0
    reg = ModelRegistry(url)
    champ = reg.champion()
    assert champ is not None and champ.model == "convlstm" and champ.manifest["shipped"] == "real"
    assert champ.checksum == sha256_file(default_checkpoint("real"))
    assert champ.manifest["evaluation"] == model_card("real").get("evaluation", {})
    assert reg.load(champ.version_id).calibration is not None  # loads as the shipped nowcaster
    assert main(["models", "init", url]) == 0  # idempotent: a champion exists, nothing registered
    assert len(reg.list()) == 1


def test_models_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "r")
    assert main(["models", "init", url, "--empty"]) == 0
    ck = shift_checkpoint(tmp_path / "1.json")
    assert main(["models", "--registry", url, "add", str(ck), "--model", "test-shift", "--version", "a"]) == 0
    assert main(["models", "--registry", url, "add", str(ck), "--model", "test-shift", "--version", "b", "--parent", "a"]) == 0
    assert main(["models", "--registry", url, "add", str(ck), "--model", "test-shift", "--version", "a"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["models", "--registry", url, "promote", "a"]) == 0
    assert main(["models", "--registry", url, "promote", "b"]) == 0
    capsys.readouterr()
    assert main(["models", "--registry", url, "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["champion"] == "b" and [v["status"] for v in listing["versions"]] == ["retired", "champion"]
    assert main(["models", "--registry", url, "show", "--verify"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["manifest"]["version"] == "b" and shown["checksum"] == "ok" and shown["manifest"]["parent"] == "a"
    assert main(["models", "--registry", url, "rollback"]) == 0
    assert "a is champion again" in capsys.readouterr().out
    assert main(["models", "--registry", url, "show", "zzz"]) == 2
    assert "unknown model version 'zzz'" in capsys.readouterr().err
    assert main(["models", "--registry", url, "list"]) == 0
    assert "champion" in capsys.readouterr().out


def test_status_writes_are_atomic_under_concurrent_promotions(reg: ModelRegistry, tmp_path: Path) -> None:
    """Readers never see a torn status.json while two threads promote/rollback repeatedly."""
    import threading

    for i in range(4):
        reg.register(shift_checkpoint(tmp_path / f"{i}.json", [(i, 0)] * 12), model="test-shift", version_id=f"v{i}")
    reg.promote("v0", verify=False)
    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            st = reg.status()
            champs = [k for k, v in st.statuses.items() if v == "champion"]
            if champs != [st.champion]:
                errors.append(f"inconsistent status {st}")

    def writer(ids: list[str]) -> None:
        for vid in ids * 3:
            try:
                reg.promote(vid, verify=False)
            except RegistryError:
                pass

    threads = [threading.Thread(target=reader)] + [threading.Thread(target=writer, args=(ids,)) for ids in (["v1", "v2"], ["v3", "v0"])]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert not errors
    st = reg.status()
    assert list(st.statuses.values()).count("champion") == 1
    assert len(st.previous) == st.revision - 4 - 1  # 4 registrations, then one push per promotion


def test_tempfiles_do_not_leak(reg: ModelRegistry, tmp_path: Path) -> None:
    reg.register(shift_checkpoint(tmp_path / "1.json"), model="test-shift", version_id="v1")
    reg.promote("v1")
    leftovers = [p.name for p in Path(reg.url).rglob("*") if durability.TMP_INFIX in p.name or p.name.endswith(".part")]
    assert leftovers == []


def test_only_one_job_breaks_a_stale_lock(reg: ModelRegistry) -> None:
    import threading

    p = Path(reg.url) / "retrain.lock"
    for _ in range(5):
        past = (pd.Timestamp.now(tz="UTC") - pd.Timedelta("1h")).isoformat()
        p.write_text(json.dumps({"owner": "crashed", "pid": 1, "host": "h", "acquired": past, "expires": past, "token": "dead"}))
        winners: list[str] = []
        barrier = threading.Barrier(6)

        def contend(i: int, barrier: threading.Barrier = barrier, winners: list[str] = winners) -> None:
            barrier.wait()
            try:
                reg.lock(owner=f"job-{i}").acquire()
                winners.append(f"job-{i}")
            except LockHeldError:
                pass

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1, winners
        assert json.loads(p.read_text())["owner"] == winners[0]
        assert [q.name for q in Path(reg.url).glob("retrain.lock.stale-*")] == []
        p.unlink()
