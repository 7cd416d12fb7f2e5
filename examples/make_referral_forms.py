"""Regenerate the example referral forms in examples/forms/.

Writes ``blank-referral-form.pdf`` (a two-page fillable "MASH Referral Form (MARF)", drawn
with reportlab) and, for every case in ``examples/cases/*.json``, ``<case_ref>.pdf``: that
blank form filled with mash-requests' own ``fill_form`` and the default field mapping, then
checked with ``check_form`` (the script stops if a filled form would be refused).

Run from anywhere:  python examples/make_referral_forms.py
reportlab comes with the test extra (pip install -e '.[test]'); only this script uses it.
The output is deterministic (fixed dates and document IDs), so regenerating does not churn
git. All people and places in the examples are invented.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mash_requests.case import load_case
from mash_requests.referral_form import DEFAULT_FILL_MAPPING, check_form, fill_form

HERE = Path(__file__).resolve().parent
FORMS = HERE / "forms"
CASES = HERE / "cases"
BLANK = FORMS / "blank-referral-form.pdf"
MARKING = "OFFICIAL-SENSITIVE"
AUTHORITY = "Eastbury Borough Council — Children's Services"

# (field name, label, lines of height, hint) per section; the names are what fill_mapping uses.
Field = tuple[str, str, int, str]
PAGE_ONE: list[tuple[str, list[Field]]] = [
    (
        "1. Case",
        [
            ("case_reference", "MASH case reference", 1, "e.g. MASH-YYYY-NNNN"),
            ("contact_id", "Contact ID", 1, "from the case management system"),
        ],
    ),
    (
        "2. Child",
        [
            ("child_name", "Full name", 1, ""),
            ("child_dob", "Date of birth (or due date)", 1, "YYYY-MM-DD"),
            ("child_address", "Address", 2, ""),
        ],
    ),
    (
        "3. Referrer",
        [
            ("referrer_name", "Name", 1, ""),
            ("referrer_role", "Role", 1, ""),
            ("referrer_email", "Secure email", 1, ""),
        ],
    ),
    (
        "4. Consent",
        [
            ("consent_status", "Consent status", 1, "given / not_given / not_sought"),
            ("consent_reason", "If not given or not sought, why", 3, ""),
        ],
    ),
]
PAGE_TWO: list[tuple[str, list[Field]]] = [
    (
        "5. Concerns",
        [
            (
                "concerns",
                "What are you worried about? Include disclosures, impact on the child and "
                "support so far",
                14,
                "",
            ),
        ],
    ),
]


def draw_blank(path: Path) -> None:
    """Draw the blank fillable form with reportlab (deterministic output)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    width, height = A4
    margin = 50
    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=True, pageCompression=1)
    pdf.setTitle("MASH Referral Form (MARF)")
    pdf.setAuthor("Eastbury MASH (example)")
    pdf.setSubject(f"{MARKING} when completed")
    pdf.setCreator("mash-requests examples/make_referral_forms.py")

    def frame(page: int) -> float:
        pdf.setFillColor(colors.HexColor("#b00020"))
        pdf.setFont("Helvetica-Bold", 11)
        pdf.drawCentredString(width / 2, height - 28, MARKING)
        pdf.drawCentredString(width / 2, 22, MARKING)
        pdf.setFillColor(colors.black)
        pdf.setFont("Helvetica", 8)
        pdf.drawString(margin, 22, "MARF v3 (example)")
        pdf.drawRightString(width - margin, 22, f"Page {page} of 2")
        return height - 60

    def section(y: float, title: str, fields: list[Field]) -> float:
        pdf.setFillColor(colors.HexColor("#1f3864"))
        pdf.rect(margin, y - 16, width - 2 * margin, 18, stroke=0, fill=1)
        pdf.setFillColor(colors.white)
        pdf.setFont("Helvetica-Bold", 11)
        pdf.drawString(margin + 6, y - 11, title)
        pdf.setFillColor(colors.black)
        y -= 26
        for name, label, lines, hint in fields:
            box = 16 * lines + 4
            pdf.setFont("Helvetica-Bold", 9)
            pdf.drawString(margin, y - 10, label)
            if hint:
                pdf.setFont("Helvetica-Oblique", 7.5)
                pdf.setFillColor(colors.grey)
                pdf.drawString(margin, y - 20, hint)
                pdf.setFillColor(colors.black)
            label_width = 170 if lines < 6 else 0
            if label_width == 0:
                y -= 24
            pdf.acroForm.textfield(
                name=name,
                tooltip=label,
                x=margin + label_width,
                y=y - box,
                width=width - 2 * margin - label_width,
                height=box,
                fontName="Helvetica",
                fontSize=10,
                borderWidth=1,
                borderColor=colors.HexColor("#7f7f7f"),
                fillColor=colors.HexColor("#f2f5fa"),
                textColor=colors.black,
                forceBorder=True,
                fieldFlags="multiline" if lines > 1 else "",
            )
            y -= box + 10
        return y - 6

    y = frame(1)
    pdf.setFont("Helvetica-Bold", 17)
    pdf.drawString(margin, y - 8, "MASH Referral Form (MARF)")
    pdf.setFont("Helvetica", 9)
    pdf.drawString(margin, y - 24, AUTHORITY)
    pdf.drawString(
        margin,
        y - 36,
        "Attached to every request for information sent by the Multi-Agency Safeguarding Hub.",
    )
    y -= 52
    for title, fields in PAGE_ONE:
        y = section(y, title, fields)
    pdf.showPage()

    y = frame(2)
    for title, fields in PAGE_TWO:
        y = section(y, title, fields)
    pdf.setFont("Helvetica", 8.5)
    for line in (
        "Information is shared under Working Together to Safeguard Children 2023 and the",
        "Data Protection Act 2018 (Sch. 1 para 18 where consent is not sought or not given).",
        "Partners: reply to the MASH secure mailbox within the timescale in the request.",
    ):
        pdf.drawString(margin, y - 4, line)
        y -= 12
    pdf.showPage()
    pdf.save()


def main() -> int:
    FORMS.mkdir(exist_ok=True)
    draw_blank(BLANK)
    blank = BLANK.read_bytes()
    print(f"wrote {BLANK.relative_to(HERE.parent)}")
    for case_file in sorted(CASES.glob("*.json")):
        case = load_case(case_file)
        filled = fill_form(blank, case.form_values(DEFAULT_FILL_MAPPING))
        verdict = check_form(filled, case.case_ref)
        if not verdict.accepted:
            print(f"{case_file.name}: filled form refused: {verdict.detail}", file=sys.stderr)
            return 1
        out = FORMS / f"{case.case_ref}.pdf"
        out.write_bytes(filled)
        print(f"wrote {out.relative_to(HERE.parent)}  sha256 {verdict.sha256[:16]}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
