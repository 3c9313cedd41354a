"""The node-side OTA state machine: every path ends on a valid model."""

import zlib
from base64 import b64encode

import pytest

from edgefleet.device.ota_client import MAX_RETRIES, REQUEST_TIMEOUT_S, OtaClient, Slots
from edgefleet.runtime import keys
from edgefleet.toolchain.bad_updates import KINDS, bad_updates

from .conftest import make_versioned


@pytest.fixture()
def fresh_node(versioned):
    def make(signing_key, version=1):
        slots = Slots()
        slots.images["A"] = versioned(version)
        return OtaClient(slots, signing_key.public_key(), device="dev-1")
    return make


def serve(client, blob, offer, now=0.0, corrupt_every=0, drop_every=0, reports=None, pending=None):
    """Answer the node's chunk requests (from the offer, or from its `pending` messages) until it stops
    asking; returns every state it reported (and appends each ota/state body to `reports` when given)."""
    states = []
    pending = client.offer(offer, now) if pending is None else pending
    n = 0
    while pending:
        msgs, pending = pending, []
        for kind, body in msgs:
            if kind == "ota/state":
                states.append(body["state"])
                if reports is not None:
                    reports.append(body)
                continue
            n += 1
            data = blob[body["off"]:body["off"] + body["len"]]
            crc = zlib.crc32(data)
            if drop_every and n % drop_every == 0:
                now += REQUEST_TIMEOUT_S
                pending += client.tick(now)
                continue
            if corrupt_every and n % corrupt_every == 0:
                data = bytes([data[0] ^ 1]) + data[1:]
            pending += client.chunk({"campaign": offer["campaign"], "model": offer["model"],
                                     "off": body["off"], "crc": crc, "data": b64encode(data).decode()}, now)
    return states, now


def test_good_update_goes_through_trial_to_confirmed(fresh_node, signing_key, release):
    node = fresh_node(signing_key)
    blob, _, offer = release(2)
    states, now = serve(node, blob, offer)
    assert states == ["accepted", "verifying", "trial"]
    assert node.current_version() == 2 and node.slots.trial
    assert node.tick(now + 5) == []  # still in trial
    assert [m[1]["state"] for m in node.tick(now + 11)] == ["confirmed"]
    assert node.current_version() == 2 and node.slots.trial is None and node.slots.confirmed_version == 2


def test_lossy_and_corrupting_link_still_delivers(fresh_node, signing_key, release):
    node = fresh_node(signing_key)
    blob, _, offer = release(2, chunk=128)
    states, _ = serve(node, blob, offer, corrupt_every=3, drop_every=5)
    assert states[-1] == "trial" and node.current_version() == 2


@pytest.mark.parametrize("case", KINDS)
def test_bad_updates_are_rejected_and_the_old_model_keeps_running(fresh_node, signing_key, tmp_path, case):
    other = keys.generate(tmp_path / "other.key")
    cases = bad_updates(make_versioned(1), signing_key, other, current=3)
    assert tuple(cases) == KINDS
    bad = cases[case]
    node = fresh_node(signing_key, version=3)
    reports = []
    states, _ = serve(node, bad.blob, bad.offer(f"c-{case}", chunk=512, ticket_key=signing_key, device="dev-1"), reports=reports)
    assert states[-1] == "rejected" and bad.expect in reports[-1]["reason"]
    if bad.at_offer:  # the offer and its signed manifest show it: not one chunk is fetched
        assert states == ["rejected"]
    else:  # only the artifact's bytes can show it
        assert states == ["accepted", "verifying", "rejected"]
    assert node.current_version() == 3 and node.slots.trial is None  # the node keeps its model


def test_an_offer_that_lies_about_its_size_is_refused_before_download(fresh_node, signing_key, release):
    node = fresh_node(signing_key, version=3)
    blob, _, offer = release(4)
    reports = []
    states, _ = serve(node, blob, dict(offer, size=10 * 1024 * 1024), reports=reports)
    assert states == ["rejected"] and "exceeds" in reports[-1]["reason"]
    assert node.current_version() == 3


def test_reboot_during_trial_reverts(fresh_node, signing_key, release):
    node = fresh_node(signing_key)
    blob, _, offer = release(2)
    serve(node, blob, offer)
    assert node.current_version() == 2
    rebooted = OtaClient(node.slots, signing_key.public_key(), device="dev-1")  # same flash, new RAM
    msgs = rebooted.boot(1.0)
    assert [m[1]["state"] for m in msgs] == ["reverted"]
    assert rebooted.current_version() == 1


def test_reboot_mid_download_resumes_from_a_fresh_offer(fresh_node, signing_key, release):
    node = fresh_node(signing_key)
    blob, _, offer = release(2, chunk=256)
    first = node.offer(offer, 0.0)
    req = first[-1][1]
    data = blob[:req["len"]]
    node.chunk({"campaign": "c2", "model": 2, "off": 0, "crc": zlib.crc32(data),
                "data": b64encode(data).decode()}, 0.0)
    rebooted = OtaClient(node.slots, signing_key.public_key(), device="dev-1")
    assert rebooted.boot(1.0) == [] and rebooted.current_version() == 1
    states, _ = serve(rebooted, blob, offer, now=2.0)
    assert states[-1] == "trial" and rebooted.current_version() == 2


def test_unhealthy_trial_reverts_and_revert_command_rolls_back_confirmed(fresh_node, signing_key, release):
    node = fresh_node(signing_key)
    blob, _, offer = release(2)
    _, now = serve(node, blob, offer)
    assert node.tick(now + 100, healthy=False)[0][1]["state"] == "reverted"
    assert node.current_version() == 1
    node2 = fresh_node(signing_key)
    _, now = serve(node2, blob, offer)
    node2.tick(now + 100)
    assert node2.current_version() == 2
    assert node2.revert(now + 200)[0][1]["state"] == "reverted"
    assert node2.current_version() == 1


def test_revert_command_names_the_campaign_of_a_confirmed_model(fresh_node, signing_key, release):
    """An aborted campaign's revert reaches a node that already confirmed: the report names the
    campaign; a revert for another campaign changes nothing; a repeat cannot switch back."""
    node = fresh_node(signing_key)
    blob, _, offer = release(2)
    _, now = serve(node, blob, offer)
    node.tick(now + 100)
    assert node.current_version() == 2 and node.own_campaign() == "c2"
    assert node.revert(now + 200, campaign="c9") == [] and node.current_version() == 2  # not c2's revert
    (kind, st), = node.revert(now + 201, campaign="c2")
    assert (kind, st["campaign"], st["model"], st["state"]) == ("ota/state", "c2", 2, "reverted")
    assert node.current_version() == 1 and node.own_campaign() is None  # the factory model
    assert node.revert(now + 202, campaign="c2") == [] and node.current_version() == 1  # 2 was dropped


def test_revert_of_an_unknown_origin_is_reported_under_the_command_campaign(fresh_node, signing_key, release):
    """A model whose campaign the node does not know (slots from before it kept one) reverts under
    the command's campaign; without one, under "none"."""
    node = fresh_node(signing_key)
    blob, _, offer = release(2)
    _, now = serve(node, blob, offer)
    node.tick(now + 100)
    node.slots.campaigns[node.slots.active] = None
    assert node.revert(now + 200, campaign="c-abort")[0][1]["campaign"] == "c-abort"
    node2 = fresh_node(signing_key)
    _, now = serve(node2, blob, offer)
    node2.tick(now + 100)
    node2.slots.campaigns[node2.slots.active] = None
    assert node2.revert(now + 200)[0][1]["campaign"] == "none"


def test_revert_for_another_campaign_leaves_a_download_or_trial_alone(fresh_node, signing_key, release):
    node = fresh_node(signing_key)
    blob, _, offer = release(2)
    node.offer(offer, 0.0)
    assert node.revert(1.0, campaign="c-old") == [] and node.download is not None
    assert [b["state"] for _, b in node.revert(2.0, campaign="c2")] == ["failed"] and node.download is None
    node2 = fresh_node(signing_key)
    _, now = serve(node2, blob, offer)
    assert node2.revert(now, campaign="c-old") == [] and node2.slots.trial and node2.current_version() == 2
    assert [(b["campaign"], b["state"]) for _, b in node2.revert(now, campaign="c2")] == [("c2", "reverted")]
    assert node2.current_version() == 1


def test_download_gives_up_after_retries(fresh_node, signing_key, release):
    node = fresh_node(signing_key)
    blob, _, offer = release(2)
    node.offer(offer, 0.0)
    msgs = []
    for i in range(MAX_RETRIES + 1):
        msgs = node.tick((i + 1) * REQUEST_TIMEOUT_S)
    assert msgs[-1][1]["state"] == "failed" and node.current_version() == 1


def test_an_offer_during_a_download_or_trial_never_ends_it(fresh_node, signing_key, release, tmp_path):
    """Security issue 16: an offer during a download or a trial is refused under "none" before any check,
    as the C node must (it verifies an offer only once its documents are fetched): forged offers leave
    a genuine download going and its campaign without "failed"; a genuine superseding offer is taken
    when it comes again once the node is free (tests/mcu/test_qemu_ota.py, the same on the C node)."""
    attacker = keys.generate(tmp_path / "attacker.key")
    node = fresh_node(signing_key)
    blob2, _, offer2 = release(2, chunk=256)
    blob3, _, offer3 = release(3)
    forged = [release(3, ticket_key=attacker)[2], {**offer3, "ticket": "{garbage" * 9},
              {k: v for k, v in offer3.items() if k != "ticket"}, {**release(3, ticket_key=attacker)[2], "campaign": "c2"}]
    first = node.offer(offer2, 0.0)
    assert first[0][1]["state"] == "accepted"
    req = first[-1][1]
    data = blob2[:req["len"]]
    node.chunk({"campaign": "c2", "model": 2, "off": 0, "crc": zlib.crc32(data), "data": b64encode(data).decode()}, 0.5)
    for offer in forged + [offer3]:
        (kind, st), = node.offer(offer, 1.0)
        assert (kind, st["campaign"], st["model"], st["state"], st["reason"]) == (
            "ota/state", "none", 3, "rejected", "busy: another download is in progress")
    assert node.download is not None and node.download.offset == req["len"]  # where it was
    assert node.offer(offer2, 2.0) == []  # its retained offer again: the download goes on
    states, now = serve(node, blob2, offer2, now=6.0, pending=node.tick(6.0))  # the pending chunk asked again
    assert node.current_version() == 2 and states == ["verifying", "trial"]
    assert (node.offer(offer3, now)[0][1]["reason"], node.offer(offer2, now)) == ("busy: another update is in trial", [])
    node.tick(now + 11)
    states, _ = serve(node, blob3, offer3, now=now + 12)  # the manager's resend, now that the node is free
    assert states == ["accepted", "verifying", "trial"] and node.current_version() == 3
