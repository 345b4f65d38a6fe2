"""The visit's pure rules: Graph call events reduced to the patient's presence and the report
steps, the waits and durations derived from them, join-link hashing and meeting external ids.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from connector.domain.meeting import (
    EXTERNAL_ID_PREFIX, CallEvent, CallEventKind, MeetingRequest, ParticipantRole, RosterChange, meeting_external_id,
)
from connector.domain.visit import (
    JOIN_LINK_GRACE, JoinLink, PatientPresence, Visit, VisitStep, apply_call_event, lobby_wait, token_hash,
    visit_duration,
)

TENANT = "11111111-2222-3333-4444-555555555555"
T0 = datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc)
ORGANIZER = "org-participant-1"
PATIENT = "guest-patient-1"
COMPANION = "guest-companion-2"


def visit(**changes) -> Visit:
    base = dict(
        tenant_id=TENANT, endpoint_id="main", appointment_id="4826003", meeting_id="MSo-meeting",
        join_web_url="https://teams.microsoft.com/l/meetup-join/x", organizer_user_id="dr@example.org",
        appointment_start=T0, appointment_end=T0 + timedelta(minutes=15), created_at=T0 - timedelta(hours=1),
        updated_at=T0 - timedelta(hours=1),
    )
    return Visit(**{**base, **changes})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(minutes: float, *roster: RosterChange, kind: CallEventKind = CallEventKind.roster_updated) -> CallEvent:
    return CallEvent(subscription_id="sub-0001", client_state="state", kind=kind, at=at(minutes), roster=roster)


def guest(participant_id: str = PATIENT, *, lobby: bool = False, left: bool = False) -> RosterChange:
    return RosterChange(participant_id=participant_id, role=ParticipantRole.guest, in_lobby=lobby, left=left)


def organizer(*, left: bool = False) -> RosterChange:
    return RosterChange(participant_id=ORGANIZER, role=ParticipantRole.organizer, left=left)


def run(start: Visit, *events: CallEvent) -> tuple[Visit, list[list[VisitStep]]]:
    current, all_steps = start, []
    for e in events:
        current, steps = apply_call_event(current, e)
        all_steps.append(steps)
    return current, all_steps


# -- the happy path, step by step -------------------------------------------------------------


def test_a_new_visit_is_invited_with_nobody_in():
    v = visit()
    assert v.patient is PatientPresence.invited
    assert (v.provider_in_meeting, v.guests_in_lobby, v.guests_in_meeting) == (False, [], [])
    assert lobby_wait(v) is None and visit_duration(v) is None
    assert v.link_expires_at == v.appointment_end + JOIN_LINK_GRACE == at(15) + timedelta(hours=2)


def test_the_patient_waiting_in_the_lobby_starts_the_lobby_step():
    updated, steps = apply_call_event(visit(), event(1, guest(lobby=True)))
    assert steps == [VisitStep.lobby]
    assert updated.patient is PatientPresence.lobby
    assert updated.lobby_since == at(1)
    assert updated.guests_in_lobby == [PATIENT] and updated.guests_in_meeting == []
    assert updated.admitted_at is None and updated.started_at is None
    assert updated.updated_at == at(1)


def test_admission_then_both_in_then_call_end_walks_every_step_once():
    final, steps = run(
        visit(),
        event(1, guest(lobby=True)),
        event(4, guest()),  # admitted: the organizer is not in yet
        event(5, organizer()),  # both in: the visit has started
        event(20, kind=CallEventKind.call_ended),
    )
    assert steps == [[VisitStep.lobby], [VisitStep.admitted], [VisitStep.started], [VisitStep.ended]]
    assert (final.lobby_since, final.admitted_at, final.started_at, final.ended_at) == (at(1), at(4), at(5), at(20))
    assert final.patient is PatientPresence.left
    assert (final.provider_in_meeting, final.guests_in_lobby, final.guests_in_meeting) == (False, [], [])
    assert lobby_wait(final) == timedelta(minutes=3)
    assert visit_duration(final) == timedelta(minutes=15)


def test_admission_sets_admitted_at_and_moves_the_guest_out_of_the_lobby():
    in_lobby, _ = apply_call_event(visit(), event(1, guest(lobby=True)))
    admitted, steps = apply_call_event(in_lobby, event(3, guest()))
    assert steps == [VisitStep.admitted]
    assert admitted.patient is PatientPresence.in_visit
    assert admitted.admitted_at == at(3) and admitted.lobby_since == at(1)
    assert admitted.guests_in_lobby == [] and admitted.guests_in_meeting == [PATIENT]
    assert admitted.started_at is None  # the clinician has not joined


def test_admitted_with_the_organizer_already_in_completes_admitted_and_started_together():
    final, steps = run(visit(), event(0, organizer()), event(1, guest(lobby=True)), event(2, guest()))
    assert steps == [[], [VisitStep.lobby], [VisitStep.admitted, VisitStep.started]]
    assert final.admitted_at == final.started_at == at(2)
    assert final.provider_in_meeting is True


def test_a_lobby_entry_and_admission_in_one_event_lists_lobby_first():
    # one event: the companion waits in the lobby, the patient is in, the organizer joins
    updated, steps = apply_call_event(visit(), event(1, guest(COMPANION, lobby=True), guest(), organizer()))
    assert steps == [VisitStep.lobby, VisitStep.admitted, VisitStep.started]


# -- idempotence and order -----------------------------------------------------------------------


def test_the_same_event_applied_twice_changes_nothing_and_yields_no_steps():
    first = event(1, guest(lobby=True))
    once, steps_once = apply_call_event(visit(), first)
    twice, steps_twice = apply_call_event(once, first)
    assert steps_once == [VisitStep.lobby]
    assert steps_twice == []
    assert twice == once


@pytest.mark.parametrize("kind", [CallEventKind.call_ended, CallEventKind.roster_updated])
def test_a_repeated_ending_event_changes_nothing(kind):
    ended, _ = run(visit(), event(1, guest()), event(2, organizer()), event(9, kind=CallEventKind.call_ended))
    again, steps = apply_call_event(ended, event(9, kind=kind))
    assert steps == [] and again == ended and again.ended_at == at(9)


def test_a_whole_sequence_replayed_yields_no_new_steps():
    events = [event(1, guest(lobby=True)), event(3, guest()), event(4, organizer()),
              event(12, kind=CallEventKind.call_ended)]
    final, _ = run(visit(), *events)
    replayed, steps = run(final, *events)
    assert steps == [[], [], [], []]
    assert (replayed.lobby_since, replayed.admitted_at, replayed.started_at, replayed.ended_at) == (
        final.lobby_since, final.admitted_at, final.started_at, final.ended_at)


def test_admission_reported_before_the_lobby_keeps_sane_times():
    """Graph delivered "in the meeting" (t=4) before the older "in the lobby" (t=1)."""
    admitted, first = apply_call_event(visit(), event(4, guest()))
    assert first == [VisitStep.admitted]
    late, steps = apply_call_event(admitted, event(1, guest(lobby=True)))
    assert late.admitted_at == at(4)  # never moved by the late event
    assert late.lobby_since in (None, at(1))
    assert lobby_wait(late) is None or lobby_wait(late) >= timedelta(0)
    assert late.updated_at == at(4)  # updated_at never goes back in time
    assert VisitStep.admitted not in steps


def test_a_late_lobby_event_does_not_send_an_admitted_patient_back_to_the_lobby():
    # (found while writing these tests: a late report used to move the patient back to the lobby)
    admitted, _ = apply_call_event(visit(), event(4, guest()))
    late, steps = apply_call_event(admitted, event(1, guest(lobby=True)))
    assert late.patient is PatientPresence.in_visit
    assert late.guests_in_meeting == [PATIENT] and late.guests_in_lobby == []
    assert steps == [] and late.lobby_since is None
    assert late.participants_seen == {PATIENT: at(4)}


def test_a_late_organizer_report_does_not_undo_a_newer_one():
    joined, _ = apply_call_event(visit(), event(5, organizer()))
    late, _ = apply_call_event(joined, event(2, organizer(left=True)))
    assert late.provider_in_meeting is True


def test_participants_are_tracked_one_by_one_in_time():
    v, _ = run(visit(), event(1, guest(PATIENT, lobby=True)), event(3, guest(COMPANION, lobby=True)))
    # a report at t=2 is late for the companion (seen at 3) but news for the patient (seen at 1)
    v, steps = apply_call_event(v, event(2, guest(PATIENT), guest(COMPANION, left=True)))
    assert v.guests_in_meeting == [PATIENT] and v.guests_in_lobby == [COMPANION]
    assert steps == [VisitStep.admitted] and v.admitted_at == at(2)
    assert v.participants_seen == {PATIENT: at(2), COMPANION: at(3)}


def test_a_report_at_the_same_instant_is_applied():
    v, _ = apply_call_event(visit(), event(1, guest(lobby=True)))
    v, steps = apply_call_event(v, event(1, guest()))
    assert v.patient is PatientPresence.in_visit and steps == [VisitStep.admitted]


def test_lobby_wait_is_never_negative():
    v = visit(lobby_since=at(5), admitted_at=at(2))
    assert lobby_wait(v) == timedelta(0)
    assert visit_duration(visit(started_at=at(5), ended_at=at(4))) == timedelta(0)


# -- the organizer and several guests -----------------------------------------------------------


def test_the_organizer_leaving_and_rejoining_tracks_presence_without_new_steps():
    started, _ = run(visit(), event(1, guest()), event(2, organizer()))
    assert started.started_at == at(2)
    left, left_steps = apply_call_event(started, event(6, organizer(left=True)))
    assert left_steps == [] and left.provider_in_meeting is False
    assert left.patient is PatientPresence.in_visit  # the patient stays in the meeting
    back, back_steps = apply_call_event(left, event(8, organizer()))
    assert back_steps == [] and back.provider_in_meeting is True
    assert back.started_at == at(2)  # the start is the first time both were in


def test_the_organizer_alone_does_not_start_the_visit():
    alone, steps = apply_call_event(visit(), event(1, organizer()))
    assert steps == [] and alone.provider_in_meeting is True
    assert alone.started_at is None and alone.patient is PatientPresence.invited


def test_two_guests_are_tracked_by_id():
    final, steps = run(
        visit(),
        event(1, guest(PATIENT, lobby=True)),
        event(2, guest(COMPANION, lobby=True)),
        event(3, guest(PATIENT)),  # the patient is admitted, the companion still waits
    )
    assert steps == [[VisitStep.lobby], [], [VisitStep.admitted]]
    assert final.guests_in_lobby == [COMPANION] and final.guests_in_meeting == [PATIENT]
    assert final.patient is PatientPresence.in_visit
    assert final.lobby_since == at(1)

    both, more = apply_call_event(final, event(4, guest(COMPANION)))
    assert more == [] and both.guests_in_meeting == sorted([PATIENT, COMPANION]) and both.guests_in_lobby == []

    one_left, _ = apply_call_event(both, event(9, guest(PATIENT, left=True)))
    assert one_left.patient is PatientPresence.in_visit and one_left.guests_in_meeting == [COMPANION]

    all_left, steps_left = apply_call_event(one_left, event(10, guest(COMPANION, left=True)))
    assert steps_left == [] and all_left.patient is PatientPresence.left
    assert all_left.guests_in_meeting == [] and all_left.ended_at is None  # the call itself goes on


def test_a_guest_leaving_from_the_lobby_is_left_not_invited():
    gone, _ = run(visit(), event(1, guest(lobby=True)), event(2, guest(left=True)))
    assert gone.patient is PatientPresence.left and gone.guests_in_lobby == []
    assert gone.admitted_at is None and lobby_wait(gone) is None


def test_a_call_that_ends_before_anyone_was_admitted_has_no_ended_step():
    ended, steps = run(visit(), event(1, guest(lobby=True)), event(5, kind=CallEventKind.call_ended))
    assert steps == [[VisitStep.lobby], []]
    assert ended.ended_at is None and ended.patient is PatientPresence.left
    assert visit_duration(ended) is None


def test_a_left_change_for_someone_never_seen_keeps_the_patient_invited():
    untouched, steps = apply_call_event(visit(), event(1, guest("someone-else", left=True)))
    assert steps == [] and untouched.patient is PatientPresence.invited


# -- join links and meeting ids -----------------------------------------------------------------


def test_token_hash_is_the_hex_sha256_of_the_token():
    token = "A" * 32
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert len(token_hash(token)) == 64 and token_hash(token) != token_hash("B" * 32)


def test_a_join_link_row_only_accepts_a_hash_as_its_key():
    common = dict(tenant_id=TENANT, endpoint_id="main", appointment_id="1", created_at=T0, expires_at=at(60))
    JoinLink(token_hash=token_hash("x" * 32), **common)
    with pytest.raises(ValidationError):
        JoinLink(token_hash="x" * 32, **common)  # a plaintext token cannot be a row key


def test_meeting_external_ids_are_stable_distinct_short_and_free_of_the_inputs():
    one = meeting_external_id(TENANT, "main", "4826003")
    assert one == meeting_external_id(TENANT, "main", "4826003")
    assert one.startswith(EXTERNAL_ID_PREFIX) and len(one) == len(EXTERNAL_ID_PREFIX) + 40
    assert "4826003" not in one and TENANT not in one
    others = {meeting_external_id(TENANT, "main", "4826004"), meeting_external_id(TENANT, "other", "4826003"),
              meeting_external_id("99999999-2222-3333-4444-555555555555", "main", "4826003")}
    assert one not in others and len(others) == 3


def test_external_ids_of_shifted_separators_differ():
    # "a\nb" + "c" versus "a" + "b\nc": the separator cannot be forged by an id with a dot or dash
    assert meeting_external_id(TENANT, "ab", "c") != meeting_external_id(TENANT, "a", "bc")


def test_meeting_request_fits_graph_limits():
    with pytest.raises(ValidationError):
        MeetingRequest(tenant_id=TENANT, organizer_user_id="dr@example.org", external_id="x" * 256,
                       subject="Video visit", start=T0, end=at(15))


def test_visit_appointment_ids_are_fhir_ids():
    with pytest.raises(ValidationError):
        visit(appointment_id="../4826003")



def test_a_colleague_leaving_does_not_take_the_clinician_out_of_the_meeting():
    nurse = RosterChange(participant_id="org-participant-2", role=ParticipantRole.organizer)
    nurse_leaves = RosterChange(participant_id="org-participant-2", role=ParticipantRole.organizer, left=True)
    after, steps = run(visit(), event(1, organizer(), nurse), event(2, nurse_leaves), event(3, guest()))
    assert after.provider_in_meeting and after.staff_in_meeting == [ORGANIZER]
    assert steps[-1] == [VisitStep.admitted, VisitStep.started]  # the visit starts: the clinician is still in
    gone, _ = run(after, event(4, organizer(left=True)))
    assert not gone.provider_in_meeting and gone.staff_in_meeting == []
