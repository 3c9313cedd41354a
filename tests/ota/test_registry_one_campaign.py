"""The registry refuses a second campaign while one is running or still aborting, and says what ends
it: an aborting campaign is finished by the OTA manager in `edgefleet serve` (the operator already
aborted it), a running one by an abort or its end. The dashboard's start form and `edgefleet ota
rollout` both go through `OtaRegistry.create_campaign`, so both show these words."""

from __future__ import annotations

import pytest

from edgefleet.errors import EdgefleetError
from edgefleet.runtime import manifest
from edgefleet.runtime.artifact import Artifact
from edgefleet.service.ota.campaign import Policy, Target
from edgefleet.service.ota.registry import OtaRegistry

from .conftest import make_versioned


def test_a_running_or_aborting_campaign_refuses_a_new_one_saying_what_ends_it(tmp_path, signing_key) -> None:
    reg = OtaRegistry(tmp_path / "fleet.db")
    blob = make_versioned(2)
    man = manifest.sign(manifest.build_body(blob, Artifact.from_bytes(blob), signing_key.public_key(),
                                            model_id="test"), signing_key)
    reg.publish(blob, man, {}, signing_key.public_key())
    policy = Policy.from_user("100%")
    reg.create_campaign(2, Target.parse("all"), policy, "c5")
    with pytest.raises(EdgefleetError) as running:
        reg.create_campaign(2, Target.parse("all"), policy, "c6")
    assert str(running.value) == ("campaign c5 is still running; abort it (`edgefleet ota abort c5`) or wait for it "
                                  "to finish")
    reg.abort("c5")
    with pytest.raises(EdgefleetError) as aborting:
        reg.create_campaign(2, Target.parse("all"), policy, "c6")
    words = str(aborting.value)
    assert words.startswith("campaign c5 is aborting: the OTA manager (`edgefleet serve`) finishes the abort"), words
    assert "still running" not in words and "abort it" not in words, words
    reg.update_campaign("c5", state="aborted")  # what the OTA manager does once the devices are rolled back
    assert reg.create_campaign(2, Target.parse("all"), policy, "c6").id == "c6"
    reg.close()
