"""`edgefleet ota rollout`: durations that are not finite, or absurd, are refused in one line naming
the option; an aborting campaign blocking a new one says what finishes the abort."""

import pytest

from ota.test_cli import model_folder, run


@pytest.mark.parametrize("option, value", [
    ("--shadow", "nan"), ("--trial", "nan"), ("--trial", "inf"), ("--stage-timeout", "inf"),
    ("--offer-resend", "inf"), ("--shadow", "1e300"), ("--stage-timeout", "nan"), ("--offer-resend", "nan"),
    ("--trial", "10081"), ("--shadow=", "-inf"), ("--stage-timeout", "43201"), ("--offer-resend", "86401"),
])
def test_rollout_refuses_durations_that_are_not_finite_or_absurd(tmp_path, option, value):
    args = [option + value] if option.endswith("=") else [option, value]
    proc = run("rollout", "1", *args, "--db", tmp_path / "fleet.db", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"edgefleet: error: {option.strip('-=')}: got "), lines
    assert "internal error" not in proc.stderr and "at most" in proc.stderr


def test_policy_bounds_hold_for_every_caller():
    """The dashboard's start form builds campaigns through Policy.from_user too."""
    from edgefleet.errors import EdgefleetError
    from edgefleet.service.ota.campaign import Policy

    assert Policy.from_user("100%", shadow_min=0).shadow is False  # 0 = no shadow phase
    p = Policy.from_user("100%", trial_min=10080, shadow_min=10080, stage_timeout_min=43200, offer_resend_s=86400)
    assert (p.trial_s, p.shadow_s, p.stage_timeout_s, p.offer_resend_s) == (604800, 604800, 2592000, 86400)
    for kw in ({"trial_min": float("nan")}, {"shadow_min": float("inf")}, {"stage_timeout_min": 0},
               {"offer_resend_s": float("inf")}):
        with pytest.raises(EdgefleetError):
            Policy.from_user("100%", **kw)


def test_shadow_help_states_its_default():
    out = run("rollout", "--help").stdout
    text = " ".join(out.split())
    shadow = text.split("--shadow MINUTES shadow phase")[1].split("--trial MINUTES")[0]
    assert "(default 0: no shadow phase" in shadow


def test_an_aborting_campaign_says_the_ota_manager_finishes_it(tmp_path, signing_key, release):
    folder, pub = model_folder(tmp_path, signing_key, release)
    db = tmp_path / "fleet.db"
    run("publish", folder.path, "--public", pub, "--db", db)
    run("rollout", "5", "--id", "c5", "--db", db)
    running = run("rollout", "5", "--db", db, check=False)
    assert running.returncode == 2 and "campaign c5 is still running; abort it" in running.stderr
    run("abort", "c5", "--db", db)
    proc = run("rollout", "5", "--db", db, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "campaign c5 is aborting" in proc.stderr and "edgefleet serve" in proc.stderr
    assert "still running" not in proc.stderr
