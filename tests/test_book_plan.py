"""``make book`` says what it will do before it starts: runs to train, caches to rebuild, time."""

from lib import book


def test_the_plan_of_the_committed_book_trains_nothing_and_finds_every_cache_valid():
    lines = book.plan("cpu", ["02"])
    text = "\n".join(lines)
    assert "02_low_pass_msa" in text and "runs: 6 committed" in text
    assert "will train" not in text and "will retrain" not in text
    assert any(line.strip().startswith("cached analyses:") and "valid here" in line and "recompute" not in line for line in lines)


def test_missing_runs_are_announced_with_an_estimate_and_stale_caches_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))  # nothing committed here
    text = "\n".join(book.plan("cpu", ["03"]))
    assert text.count("will train") == 3 and "time unknown" in text
    assert "a snapshot it read is not committed" in text and "will recompute" in text


def test_plan_only_never_executes_a_chapter_under_any_profile(monkeypatch, capsys):
    monkeypatch.setattr(book, "execute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("executed a chapter")))
    for profile in ("smoke", "cpu", "paper"):
        assert book.run(profile, ["00"], plan_only=True) == 0
    assert "profile paper" in capsys.readouterr().out
