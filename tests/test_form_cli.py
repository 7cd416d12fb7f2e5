"""``mash-requests form check`` and ``form fill``: output, exit codes and the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mash_requests.cli import main
from mash_requests.referral_form import (
    DEFAULT_FILL_MAPPING,
    TEXT_BYTE_LIMIT,
    TEXT_PAGE_LIMIT,
    check_form,
    fill_form,
)
from test_referral_form import JS, build_pdf, rewrite
from test_referral_form_bounds import long_report

REPO = Path(__file__).resolve().parents[1]
BLANK = REPO / "examples" / "forms" / "blank-referral-form.pdf"
EXAMPLE_CASE = REPO / "examples" / "cases" / "MASH-2026-0412.json"
REF = "MASH-2026-0412"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder with no config or password in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASH_REQUESTS_CONFIG", raising=False)
    monkeypatch.delenv("MASH_FORM_PASSWORD", raising=False)


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def form_for(tmp_path: Path, case_ref: str = REF, *, password: str | None = None) -> Path:
    """The example blank form filled for ``case_ref``, written to a file."""
    data = fill_form(BLANK.read_bytes(), {"case_reference": case_ref, "child_name": "Leo Hartley"})
    if password is not None:
        data = rewrite(data, password=password)
    path = tmp_path / f"{case_ref}.pdf"
    path.write_bytes(data)
    return path


def case_file(tmp_path: Path) -> Path:
    """A copy of the example case, without its referral_form path."""
    data = json.loads(EXAMPLE_CASE.read_text(encoding="utf-8"))
    data.pop("referral_form", None)
    path = tmp_path / "case.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mash-requests.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# form check


def test_accepted_form_exits_0_with_the_fingerprint(tmp_path: Path) -> None:
    """An accepted form prints accepted, the SHA-256, size, pages and where, and exits 0."""
    path = form_for(tmp_path)
    result = run("form", "check", path, "--case-ref", REF)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"accepted: {path}")
    assert check_form(path.read_bytes(), REF).sha256 in result.stdout
    assert "2 page(s)" in result.stdout
    assert "found in  field case_reference" in result.stdout


def test_refused_form_exits_1_with_the_reason(tmp_path: Path) -> None:
    """Another case's form prints refused (wrong_case) with the sentence, and exits 1."""
    result = run("form", "check", form_for(tmp_path, "MASH-2026-0413"), "--case-ref", REF)
    assert result.exit_code == 1
    assert "refused (wrong_case)" in result.stdout
    assert "'MASH-2026-0413', not this case's reference MASH-2026-0412" in result.stdout


def test_json_prints_one_object_equal_to_the_verdict(tmp_path: Path) -> None:
    """--json prints exactly one JSON object: the verdict's to_json, and the exit code holds."""
    path = form_for(tmp_path, "MASH-2026-0413")
    result = run("form", "check", path, "--case-ref", REF, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == check_form(path.read_bytes(), REF).to_json()
    assert result.stdout.count("\n") == 1


def test_json_accepted_exits_0(tmp_path: Path) -> None:
    """--json for an accepted form gives accepted true and exit code 0."""
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["accepted"] is True


def test_missing_file_exits_2_with_an_error_naming_it(tmp_path: Path) -> None:
    """A path that does not exist is an I/O error: Error: on stderr, exit 2, nothing on stdout."""
    result = run("form", "check", tmp_path / "nope.pdf", "--case-ref", REF, "--json")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: referral form ")
    assert "nope.pdf: not found; check the path" in result.stderr
    assert result.stdout == ""


def test_folder_exits_2(tmp_path: Path) -> None:
    """A folder given as the PDF is an input error with exit code 2."""
    result = run("form", "check", tmp_path, "--case-ref", REF)
    assert result.exit_code == 2
    assert "is a folder" in result.stderr


def test_case_ref_is_required() -> None:
    """Leaving out --case-ref is a usage error (exit 2) naming the option."""
    result = run("form", "check", "form.pdf")
    assert result.exit_code == 2
    assert "--case-ref" in result.stderr


@pytest.mark.parametrize("given", ["bad ref!", "-MASH-1", "M" * 65, "MASH-2026-0412\n", ""])
def test_a_case_ref_that_cannot_be_one_is_a_usage_error(tmp_path: Path, given: str) -> None:
    """--case-ref not of a case reference's shape (as case files must have it): exit 2
    saying what a case reference is, not "refused (wrong_case)" with exit 1."""
    result = run("form", "check", form_for(tmp_path), "--case-ref", given)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--case-ref': expected a case reference" in result.stderr
    assert result.stdout == ""


def test_encrypted_form_without_password_exits_1(tmp_path: Path) -> None:
    """A password-protected form is refused as encrypted when no password is given."""
    result = run("form", "check", form_for(tmp_path, password="s3cret"), "--case-ref", REF)
    assert result.exit_code == 1
    assert "refused (encrypted)" in result.stdout


def test_password_option_opens_the_form(tmp_path: Path) -> None:
    """--password opens an encrypted form, which is then accepted."""
    path = form_for(tmp_path, password="s3cret")
    result = run("form", "check", path, "--case-ref", REF, "--password", "s3cret")
    assert result.exit_code == 0, result.output


def test_password_from_the_environment_opens_the_form(tmp_path: Path) -> None:
    """MASH_FORM_PASSWORD opens an encrypted form without putting it on the command line."""
    path = form_for(tmp_path, password="s3cret")
    result = run("form", "check", path, "--case-ref", REF, env={"MASH_FORM_PASSWORD": "s3cret"})
    assert result.exit_code == 0, result.output


def test_password_from_the_config_opens_the_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """form.password (password_env in the config) is used when no option is given."""
    monkeypatch.setenv("FORM_PW", "s3cret")
    cfg = config(tmp_path, '[form]\npassword_env = "FORM_PW"\n')
    path = form_for(tmp_path, password="s3cret")
    result = run("form", "check", path, "--case-ref", REF, "--config", cfg)
    assert result.exit_code == 0, result.output


def test_password_is_not_echoed(tmp_path: Path) -> None:
    """A wrong password is refused without being printed back."""
    path = form_for(tmp_path, password="s3cret")
    result = run("form", "check", path, "--case-ref", REF, "--password", "hunter2-wrong")
    assert result.exit_code == 1
    assert "hunter2-wrong" not in result.output


def test_max_size_option_refuses_a_larger_form(tmp_path: Path) -> None:
    """--max-size-mb below the form's size refuses it as too_large."""
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--max-size-mb", "0.01")
    assert result.exit_code == 1
    assert "refused (too_large)" in result.stdout


def test_max_size_from_the_config(tmp_path: Path) -> None:
    """form.max_size_mb in the config applies when the option is not given."""
    cfg = config(tmp_path, "[form]\nmax_size_mb = 0.01\n")
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--config", cfg)
    assert result.exit_code == 1
    assert "refused (too_large)" in result.stdout


def test_max_size_option_overrides_the_config(tmp_path: Path) -> None:
    """--max-size-mb wins over the config's max_size_mb."""
    cfg = config(tmp_path, "[form]\nmax_size_mb = 0.01\n")
    path = form_for(tmp_path)
    result = run("form", "check", path, "--case-ref", REF, "--config", cfg, "--max-size-mb", "5")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("size", ["nan", "inf", "1e309", "5000"])
def test_max_size_that_is_no_size_is_a_usage_error(tmp_path: Path, size: str) -> None:
    """nan, infinity or beyond 1024 MB: exit 2 naming the option, not a traceback."""
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--max-size-mb", size)
    assert result.exit_code == 2
    assert "--max-size-mb" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_max_size_in_the_config_must_be_a_finite_number(tmp_path: Path, value: str) -> None:
    """TOML allows nan and inf: a size that is neither a size is a config error (exit 2)."""
    cfg = config(tmp_path, f"[form]\nmax_size_mb = {value}\n")
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--config", cfg)
    assert result.exit_code == 2
    assert "max_size_mb: must be a finite number" in result.output


def test_zero_max_size_is_a_usage_error(tmp_path: Path) -> None:
    """--max-size-mb 0 is refused as bad usage (exit 2)."""
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--max-size-mb", "0")
    assert result.exit_code == 2


def test_case_ref_field_from_the_config(tmp_path: Path) -> None:
    """form.case_ref_field names the field that must hold the reference."""
    cfg = config(tmp_path, '[form]\ncase_ref_field = "child_name"\n')
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--config", cfg)
    assert result.exit_code == 1
    assert "refused (wrong_case)" in result.stdout


def test_bad_config_exits_2(tmp_path: Path) -> None:
    """A config error is printed as Error: with exit code 2."""
    cfg = config(tmp_path, "[form]\nmax_size_mb = 0\n")
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--config", cfg)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: config ")


def test_check_help_teaches_with_examples() -> None:
    """form check --help shows examples, the reason codes and the exit codes."""
    result = run("form", "check", "--help")
    assert result.exit_code == 0
    assert "mash-requests form check forms/MASH-2026-0412.pdf --case-ref MASH-2026-0412" in (
        result.stdout
    )
    assert "wrong_case" in result.stdout
    assert "Exit codes: 0 accepted; 1 refused; 2" in result.stdout


def test_a_long_document_says_how_many_pages_were_searched(tmp_path: Path) -> None:
    """The 117-page report without the reference exits 1 and says how many pages were searched."""
    path = tmp_path / "report.pdf"
    path.write_bytes(long_report())
    verdict = check_form(path.read_bytes(), REF)
    result = run("form", "check", path, "--case-ref", REF)
    assert result.exit_code == 1
    assert "refused (case_ref_missing)" in result.stdout
    assert (
        f"  searched  the form fields and the text of {verdict.pages_searched} of 117 pages"
        in result.stdout
    )
    assert f"the first {verdict.pages_searched} of 117 pages" in result.stdout


def test_json_carries_the_pages_searched(tmp_path: Path) -> None:
    """--json gives pages_searched: 0 when a field bound the form."""
    result = run("form", "check", form_for(tmp_path), "--case-ref", REF, "--json")
    assert json.loads(result.stdout)["pages_searched"] == 0


def test_a_form_that_submits_itself_is_refused_naming_the_action(tmp_path: Path) -> None:
    """A form whose button posts its contents to a URL exits 1 as active_content, naming it."""
    submit = (
        "<< /Type /Annot /Subtype /Widget /FT /Btn /T (send) /Rect [0 0 9 9] "
        "/A << /S /SubmitForm /F << /FS /URL /F (https://collect.example.org) >> >> >>"
    )
    path = tmp_path / "submits.pdf"
    path.write_bytes(build_pdf((f"Case {REF}",), annots=[submit]))
    result = run("form", "check", path, "--case-ref", REF)
    assert result.exit_code == 1
    assert "refused (active_content)" in result.stdout
    assert "SubmitForm action" in result.stdout


def test_check_help_names_the_bounds_and_the_outside_actions() -> None:
    """form check --help says what is searched and which outside-reaching actions are refused."""
    result = run("form", "check", "--help")
    assert "SubmitForm, ImportData, GoToR, GoToE" in result.stdout
    assert "too complex to check" in result.stdout
    assert f"first {TEXT_PAGE_LIMIT} pages, within {TEXT_BYTE_LIMIT // 1024} KB" in result.stdout


# --------------------------------------------------------------------------------------------
# form fill


def test_fill_writes_a_form_that_passes_the_check(tmp_path: Path) -> None:
    """form fill writes the case's filled form, accepted for that case, and exits 0."""
    out = tmp_path / "filled.pdf"
    result = run("form", "fill", "--template", BLANK, "--case", case_file(tmp_path), "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {out} for {REF}")
    verdict = check_form(out.read_bytes(), REF)
    assert verdict.accepted
    assert verdict.sha256 in result.stdout


def test_fill_uses_the_mapping_from_the_config(tmp_path: Path) -> None:
    """[form.fill_mapping] changes which case field fills a form field."""
    from pypdf import PdfReader

    cfg = config(tmp_path, '[form.fill_mapping]\nchild_address = "contact_id"\n')
    out = tmp_path / "filled.pdf"
    result = run(
        "form", "fill", "--template", BLANK, "--case", case_file(tmp_path), "--out", out,
        "--config", cfg,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PdfReader(out).get_form_text_fields()["child_address"] == "CON-88213"


def test_fill_writes_dates_as_the_request_does(tmp_path: Path) -> None:
    """The date of birth on the filled form reads "9 April 2016", as in the request's body."""
    from pypdf import PdfReader

    out = tmp_path / "filled.pdf"
    result = run("form", "fill", "--template", BLANK, "--case", case_file(tmp_path), "--out", out)
    assert result.exit_code == 0, result.output
    assert PdfReader(out).get_form_text_fields()["child_dob"] == "9 April 2016"


def test_fill_writes_the_rating_with_its_timescale_as_the_request_does(tmp_path: Path) -> None:
    """A form field mapped to ``rag`` reads "AMBER (24 working hours)" from [timescales]."""
    from pypdf import PdfReader

    cfg = config(
        tmp_path,
        '[timescales]\nworking_hours = ["amber"]\n[form.fill_mapping]\nchild_address = "rag"\n',
    )
    out = tmp_path / "filled.pdf"
    result = run(
        "form", "fill", "--template", BLANK, "--case", case_file(tmp_path), "--out", out,
        "--config", cfg,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PdfReader(out).get_form_text_fields()["child_address"] == "AMBER (24 working hours)"


def test_fill_with_a_field_the_template_lacks_exits_2_naming_it(tmp_path: Path) -> None:
    """A mapping naming a form field the template does not have is exit 2, naming the field."""
    cfg = config(tmp_path, '[form.fill_mapping]\nchild_nhs_number = "contact_id"\n')
    out = tmp_path / "filled.pdf"
    result = run(
        "form", "fill", "--template", BLANK, "--case", case_file(tmp_path), "--out", out,
        "--config", cfg,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "'child_nhs_number'" in result.stderr
    assert not out.exists()


def test_fill_template_without_fields_exits_2(tmp_path: Path) -> None:
    """A template with no form fields is an input error."""
    template = tmp_path / "flat.pdf"
    template.write_bytes(build_pdf())
    out = tmp_path / "filled.pdf"
    result = run(
        "form", "fill", "--template", template, "--case", case_file(tmp_path), "--out", out
    )
    assert result.exit_code == 2
    assert "no form fields" in result.stderr


def test_fill_with_a_filled_template_exits_2_naming_template_and_field(tmp_path: Path) -> None:
    """Another case's filled form as the template is exit 2, naming it and a field; no output."""
    template = REPO / "examples" / "forms" / "MASH-2026-0413.pdf"
    out = tmp_path / "x.pdf"
    result = run(
        "form", "fill", "--template", template, "--case", case_file(tmp_path), "--out", out
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: referral form template {template}: field ")
    assert "already has a value" in result.stderr
    assert not out.exists()


def test_fill_into_a_missing_folder_exits_2_and_leaves_nothing(tmp_path: Path) -> None:
    """--out in a folder that does not exist is exit 2 naming it, with nothing written."""
    out = tmp_path / "missing" / "filled.pdf"
    result = run("form", "fill", "--template", BLANK, "--case", case_file(tmp_path), "--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: referral form {out}: cannot be written")
    assert not out.parent.exists()


def test_fill_replaces_an_existing_output_leaving_no_temporary(tmp_path: Path) -> None:
    """form fill over an existing --out replaces it and leaves no temporary file beside it."""
    folder = tmp_path / "forms"
    folder.mkdir()
    out = folder / "filled.pdf"
    out.write_bytes(b"%PDF- an older fill")
    result = run("form", "fill", "--template", BLANK, "--case", case_file(tmp_path), "--out", out)
    assert result.exit_code == 0, result.output
    assert check_form(out.read_bytes(), REF).accepted
    assert [p.name for p in folder.iterdir()] == ["filled.pdf"]


def test_fill_missing_case_file_exits_2(tmp_path: Path) -> None:
    """A case file that does not exist is exit 2, naming it."""
    out = tmp_path / "filled.pdf"
    result = run("form", "fill", "--template", BLANK, "--case", tmp_path / "no.json", "--out", out)
    assert result.exit_code == 2
    assert "no.json" in result.stderr


def test_fill_refuses_to_overwrite_the_template(tmp_path: Path) -> None:
    """--out naming the template itself is refused, leaving the template alone."""
    template = tmp_path / "blank.pdf"
    template.write_bytes(BLANK.read_bytes())
    result = run(
        "form", "fill", "--template", template, "--case", case_file(tmp_path), "--out", template
    )
    assert result.exit_code == 2
    assert template.read_bytes() == BLANK.read_bytes()


def test_fill_does_not_write_a_form_that_would_be_refused(tmp_path: Path) -> None:
    """A template carrying JavaScript fills but is refused (exit 1), and nothing is written."""
    template = tmp_path / "scripted.pdf"
    fields = dict.fromkeys(DEFAULT_FILL_MAPPING, "")
    template.write_bytes(build_pdf(fields=fields, catalog=f"/OpenAction {JS}"))
    out = tmp_path / "filled.pdf"
    result = run(
        "form", "fill", "--template", template, "--case", case_file(tmp_path), "--out", out
    )
    assert result.exit_code == 1
    assert "would be refused (active_content)" in result.stderr
    assert not out.exists()


def test_fill_help_teaches_with_examples() -> None:
    """form fill --help shows an example and how to set the mapping."""
    result = run("form", "fill", "--help")
    assert result.exit_code == 0
    assert "--case cases/MASH-2026-0412.json --out forms/MASH-2026-0412.pdf" in result.stdout
    assert "[form.fill_mapping]" in result.stdout


def test_named_pipe_exits_2_without_waiting(tmp_path: Path) -> None:
    """A named pipe given as the PDF is refused at once (exit 2), never opened and waited on."""
    from test_send_request import fifo

    path = fifo(tmp_path / "fifo.pdf")
    result = run("form", "check", path, "--case-ref", REF)
    assert result.exit_code == 2
    assert f"referral form {path}: is a named pipe (FIFO), not a regular file" in result.stderr


def test_encrypted_form_refusal_names_this_commands_option(tmp_path: Path) -> None:
    """The encrypted verdict says how form check takes a password (--password, the
    environment variable, the config's keys), and names no option it does not have."""
    result = run("form", "check", form_for(tmp_path, password="s3cret"), "--case-ref", REF)
    assert result.exit_code == 1
    assert "--password (better: the environment variable MASH_FORM_PASSWORD" in result.stdout
    assert "[form] password_env or password_file" in result.stdout
    assert "--form-password" not in result.stdout and "form.password" not in result.stdout
