"""Member import from CSV, E.164 numbers, and the case and notice commands."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from relay.cli import main
from relay.infra.db import transaction
from relay.members.directory import import_members, short_name_of
from relay.members.phones import InvalidPhone, to_e164
from relay.model.tables import Member, MemberList, Membership

GOOD_AND_BAD = """name,phone,email,timezone,language,lists,roles
Kim Jiwon,+82 10-1234-5601,JIWON@example.org,Asia/Seoul,ko,tft;seoul,coordinator;member
No Phone,,nophone@example.org,Europe/London,en,tft,member
Bad Phone,12345,bad@example.org,UTC,en,tft,member
Bad Zone,+33612345604,zone@example.org,Mars/Olympus,en,tft,member
Bad Role,+12025550105,role@example.org,UTC,en,tft,king
,+12025550106,noname@example.org,UTC,en,tft,member
Nobody,,,UTC,en,tft,member
Bad Lang,+12025550107,lang@example.org,UTC,fr,tft,member
"""


def count(services, model) -> int:
    with services.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_phone_numbers_become_e164():
    assert to_e164("+82 10-1234-5601") == "+821012345601"
    assert to_e164("(202) 555-0105", "US") == "+12025550105"
    with pytest.raises(InvalidPhone):
        to_e164("12345")
    with pytest.raises(InvalidPhone):
        to_e164("not a number")


def test_short_names():
    assert short_name_of("Kim Jiwon") == "Kim Jiwon"
    assert short_name_of("Alexandra Konstantinopoulou") == "Alexandra"


def test_good_rows_import_bad_rows_are_reported_by_line(services):
    with transaction(services.sessions) as session:
        report = import_members(session, GOOD_AND_BAD)
    assert report.created == 2
    lines = {line: reason for line, reason in report.errors}
    assert sorted(lines) == [4, 5, 6, 7, 8, 9]
    assert "not a valid phone number" in lines[4] or "not a phone number" in lines[4]
    assert "IANA" in lines[5]
    assert "unknown role 'king'" in lines[6]
    assert "name is empty" in lines[7]
    assert "needs a phone or an email" in lines[8]
    assert "language 'fr'" in lines[9]
    with services.sessions() as session:
        kim = session.scalar(select(Member).where(Member.phone == "+821012345601"))
        assert kim.email == "jiwon@example.org" and kim.roles == "member;coordinator"
        assert sorted(ml.name for ml in session.scalars(select(MemberList))) == ["seoul", "tft"]
    assert sorted(report.lists_created) == ["seoul", "tft"]


def test_importing_again_updates_rather_than_duplicates(services):
    with transaction(services.sessions) as session:
        import_members(session, GOOD_AND_BAD)
    changed = GOOD_AND_BAD.replace("Kim Jiwon,+82", "Kim Ji-won,+82").replace("tft;seoul", "tft;busan")
    with transaction(services.sessions) as session:
        report = import_members(session, changed)
    assert report.created == 0 and report.updated == 2
    assert count(services, Member) == 2
    assert count(services, Membership) == 4  # kim: tft, seoul, busan; nophone: tft
    with services.sessions() as session:
        assert session.scalar(select(Member.name).where(Member.phone == "+821012345601")) == "Kim Ji-won"


def test_missing_header_is_reported(services):
    with transaction(services.sessions) as session:
        report = import_members(session, "name,phone\nKim,+821012345601\n")
    assert report.errors and report.errors[0][0] == 1 and "header lacks" in report.errors[0][1]


def test_cli_import_add_case_and_notice(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(GOOD_AND_BAD)
    runner = CliRunner()
    result = runner.invoke(main, ["members", "import", "--grant-roles", str(csv_file)])
    assert result.exit_code == 1  # bad rows make the exit status say so
    assert "line 4:" in result.output and "imported 2 new" in result.output
    result = runner.invoke(main, ["cases", "add", "--title", "Fever and GGO", "--chief-complaint", "fever",
                                  "--exposure", "travel"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "C1"
    result = runner.invoke(main, ["notice", "new-case", "C1", "--list", "tft"])
    assert result.exit_code == 0, result.output
    # two tft members: Kim (phone and email) and No Phone (email only)
    assert "notice 1 for C1: 2 members, 1 SMS and 2 emails queued" in result.output
    result = runner.invoke(main, ["notice", "new-case", "C1", "--list", "nope"])
    assert result.exit_code != 0 and "no list named nope" in result.output
    result = runner.invoke(main, ["notice", "new-case", "C9", "--list", "tft"])
    assert result.exit_code != 0 and "no case C9" in result.output
    result = runner.invoke(main, ["cases", "add", "--title", "  "])
    assert result.exit_code != 0 and "needs a title" in result.output


# ---------------------------------------------------------------- roles only from those who may grant them

def test_without_grant_a_row_that_changes_roles_is_refused_by_line_and_the_rest_imports(services):
    from relay.model.tables import AuditEvent

    with transaction(services.sessions) as session:
        report = import_members(session, GOOD_AND_BAD, grant_roles=False, actor=audit_actor())
    lines = dict(report.errors)
    assert "roles" in lines[2] and "grant roles" in lines[2]  # Kim's row asks for coordinator
    assert report.created == 1 and report.roles_refused == 1  # No Phone still imports
    with services.sessions() as session:
        assert session.scalar(select(Member).where(Member.phone == "+821012345601")) is None
    # an admin, then a CSV that would demote them (and one that leaves the roles cell empty)
    with transaction(services.sessions) as session:
        import_members(session, "name,phone,email,timezone,language,lists,roles\n"
                                "Ada Admin,+12025550199,ada@example.org,UTC,en,tft,admin;member\n")
    demote = ("name,phone,email,timezone,language,lists,roles\n"
              "Ada Admin,+12025550199,ada@example.org,UTC,en,tft,member\n"
              "Ada Admin,+12025550199,ada@example.org,UTC,ko,tft,\n")
    with transaction(services.sessions) as session:
        report = import_members(session, demote, grant_roles=False, actor=audit_actor())
    assert [line for line, _ in report.errors] == [2] and report.updated == 1, report.errors
    with services.sessions() as session:
        ada = session.scalar(select(Member).where(Member.email == "ada@example.org"))
        assert (ada.roles, ada.language) == ("member;admin", "ko")
        audit = select(AuditEvent).order_by(AuditEvent.id)  # imports[-1] is the last one written
        edits = list(session.scalars(audit.where(AuditEvent.action == "member.edit")))
        imports = list(session.scalars(audit.where(AuditEvent.action == "member.import")))
    assert [(e.subject, e.actor, e.detail["changes"]) for e in edits] == [
        (f"member:{ada.id}", "cli:tester", {"language": ["en", "ko"]})]
    assert imports[-1].detail == {"created": 0, "updated": 1, "errors": 1, "roles_refused": 1,
                                  "roles_granted": False, "sync_lists": False}


def audit_actor():
    from relay.infra.audit import Actor

    return Actor("cli:tester", "cli")


def test_cli_import_grants_roles_only_with_the_flag(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("name,phone,email,timezone,language,lists,roles\n"
                        "Mallory,+12025550188,mallory@example.org,UTC,en,tft,admin;member\n"
                        "Plain,+12025550187,plain@example.org,UTC,en,tft,member\n")
    runner = CliRunner()
    result = runner.invoke(main, ["members", "import", str(csv_file)])
    assert result.exit_code == 1
    assert "line 2: roles" in result.output and "imported 1 new" in result.output
    result = runner.invoke(main, ["members", "import", "--grant-roles", str(csv_file)])
    assert result.exit_code == 0, result.output
    from relay.model.tables import AuditEvent
    from relay.services import build_services

    services = build_services(settings)
    try:
        with services.sessions() as session:
            assert session.scalar(select(Member.roles).where(Member.email == "mallory@example.org")) == "member;admin"
            mallory = session.scalar(select(Member.id).where(Member.email == "mallory@example.org"))
            created = session.scalar(select(AuditEvent).where(AuditEvent.action == "member.create",
                                                              AuditEvent.subject == f"member:{mallory}"))
            assert created.actor.startswith("cli:") and created.detail["changes"]["roles"] == [None, "member;admin"]
    finally:
        services.dispose()


# ---------------------------------------------------------------- re-imports (issue 15, item 6)

WITH_CHANNELS = ("name,phone,email,timezone,language,lists,roles,channels\n"
                 "Dana Lee,+12025550170,dana@example.org,UTC,en,tft,member,email\n")
WITHOUT_CHANNELS = ("name,phone,email,timezone,language,lists,roles\n"
                    "Dana Lee,+12025550170,dana@example.org,UTC,en,{lists},member\n")


def dana(services) -> tuple[bool, bool, list[str]]:
    with services.sessions() as session:
        member = session.scalar(select(Member).where(Member.email == "dana@example.org"))
        return (member.sms_discussion, member.email_discussion,
                sorted(m.member_list.name for m in member.memberships))


def test_a_reimport_without_a_channels_column_keeps_the_members_channels(services):
    with transaction(services.sessions) as session:
        assert not import_members(session, WITH_CHANNELS).errors
    assert dana(services)[:2] == (False, True)  # email only, the member's choice
    with transaction(services.sessions) as session:
        report = import_members(session, WITHOUT_CHANNELS.format(lists="tft"))
        assert (report.updated, report.errors) == (1, [])
    assert dana(services)[:2] == (False, True)  # unchanged: the column is not in the file
    with transaction(services.sessions) as session:  # a new member without the column: every channel
        import_members(session, WITHOUT_CHANNELS.replace("Dana Lee,+12025550170,dana", "Eve Kim,+12025550171,eve"))
        eve = session.scalar(select(Member).where(Member.email == "eve@example.org"))
        assert (eve.sms_discussion, eve.email_discussion) == (True, True)
    with transaction(services.sessions) as session:  # the column present and filled still sets them
        import_members(session, WITH_CHANNELS.replace(",email\n", ",sms;email\n"))
    assert dana(services)[:2] == (True, True)


def test_moving_a_member_to_another_list_needs_sync_lists(services, settings, monkeypatch, tmp_path):
    with transaction(services.sessions) as session:
        import_members(session, WITHOUT_CHANNELS.format(lists="tft;us"))
        import_members(session, WITHOUT_CHANNELS.format(lists="kr"))
    assert dana(services)[2] == ["kr", "tft", "us"]  # without --sync-lists a row only adds
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(WITHOUT_CHANNELS.format(lists="kr"))
    result = CliRunner().invoke(main, ["members", "import", "--sync-lists", str(csv_file)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "imported 0 new, updated 1, 0 rows with errors"
    assert dana(services)[2] == ["kr"]
    from relay.model.tables import AuditEvent

    with services.sessions() as session:
        edit = session.scalars(select(AuditEvent).where(AuditEvent.action == "member.edit")
                               .order_by(AuditEvent.id.desc())).first()
        assert edit.detail["changes"]["lists"] == ["kr;tft;us", "kr"]
    result = CliRunner().invoke(main, ["members", "import", "--help"])
    assert "--sync-lists" in result.output and "channels" in result.output
    csv_file.write_text(WITHOUT_CHANNELS.format(lists="kr") + "Bad,,,UTC,en,kr,member\n")
    result = CliRunner().invoke(main, ["members", "import", str(csv_file)])
    assert "1 row with errors" in result.output  # issue 15, item 10


# ---------------------------------------------------------------- each row's error in the reader's language (issue 21)

def test_every_row_error_is_a_catalogue_message_said_in_the_readers_language(services):
    from relay.render import i18n

    with transaction(services.sessions) as session:
        report = import_members(session, GOOD_AND_BAD + "Bad WA,+12025550108,wa@example.org,UTC,en,tft,member\n",
                                grant_roles=False)
        header = import_members(session, "name,phone\nKim,+821012345601\n")
        clash = import_members(session, "name,phone,email,timezone,language,lists,roles,whatsapp\n"
                                        "Bad WA,+12025550108,wa@example.org,UTC,en,tft,,12345\n")
    rows = report.refused + header.refused + clash.refused
    assert [line for line, _ in rows] == [2, 4, 5, 6, 7, 8, 9, 1, 2], rows
    assert report.errors == [(line, str(error)) for line, error in report.refused]  # the CLI's English
    for line, error in rows:
        korean = i18n.say("ko", error)
        assert korean != str(error) and re.search(r"[\uac00-\ud7a3]", korean), (line, str(error), korean)
    said = {line: i18n.say("ko", error) for line, error in report.refused}
    assert "'Mars/Olympus'" in said[5] and "'king'" in said[6]  # the values stay as written
    assert "역할" in said[2] and "member -> coordinator;member" in said[2]
    assert "email, timezone, language, lists, roles" in i18n.say("ko", header.refused[0][1])
    assert "'12345'" in i18n.say("ko", clash.refused[0][1]) and "whatsapp" in i18n.say("ko", clash.refused[0][1]).lower()
