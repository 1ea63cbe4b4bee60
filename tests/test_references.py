"""Every reference to a source document resolves to a named source.

The chapters cite the five source documents by number: "001 Eq. 3", "002 Table 1", "003 §4", "(004)".
A notebook that cites a document must list it in its own `## References` cell, as `[001]`, and the
bibliography of `nbs/index.ipynb` must list every document with its authors, title, venue and year.
"""
from __future__ import annotations
import json, re
from pathlib import Path
import pytest

NBS = Path(__file__).resolve().parent.parent / 'nbs'
DOCS = ('000', '001', '002', '003', '004')
NO_REFERENCES = {'index', '99_reproduce'}  # the bibliography itself; the runner cites nothing
_NUM = r'(?<![\w.,/-])(?<!\d )(00[0-4])(?![\w]|[.,]\d)'  # not part of 5,000, 10 000, 1.000 or c001
_LOCATOR = re.compile(_NUM + r'(?=\s*(?:§|Eqs?\.|Tables?\b|Figs?\.|Figures?\b|Sec\.|Alg\.|Listing|Appendix))')
_PARENS = re.compile(r'\([^()]*\)')
_NAMED = re.compile(r'(?:\[|[Dd]ocument\s+|[Ss]eed\s+)(00[0-4])\b')
_LISTED = re.compile(r'\[(00[0-4])\]')


def citations(text: str) -> dict[str, list[str]]:
    "Document number -> the places `text` cites it (a locator after it, inside parentheses, `[00x]`, `document 00x`)."
    out = {}
    def add(doc, m, s):
        out.setdefault(doc, []).append(' '.join(s[max(0, m.start() - 20):m.end() + 20].split()))
    for m in _LOCATOR.finditer(text): add(m.group(1), m, text)
    for m in _NAMED.finditer(text): add(m.group(1), m, text)
    for p in _PARENS.finditer(text):
        for m in re.finditer(_NUM, p.group()): add(m.group(1), p, text)
    return out


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())['cells']


def references_cell(path: Path) -> str | None:
    "The source of the notebook's `## References` markdown cell, or None."
    hits = [c['source'] for c in _cells(path) if c['cell_type'] == 'markdown' and c['source'].lstrip().startswith('## References')]
    return hits[-1] if hits else None


def problems(nbs: Path = NBS) -> list[str]:
    "One line per notebook that cites a document its References cell or the index bibliography does not list."
    bib = references_cell(nbs / 'index.ipynb') or ''
    in_bib, out = set(_LISTED.findall(bib)), []
    for doc in DOCS:
        if doc not in in_bib: out.append(f"index.ipynb: the bibliography (## References) does not list [{doc}]")
    for path in sorted(nbs.glob('*.ipynb')):
        if path.stem == 'index': continue
        refs = references_cell(path)
        cited = {}
        for c in _cells(path):
            if c['source'] is not refs and c['source'] != refs:
                for d, where in citations(c['source']).items(): cited.setdefault(d, []).extend(where)
        if refs is None:
            if path.stem not in NO_REFERENCES:
                out.append(f"{path.name}: no '## References' markdown cell" + (f" (it cites {', '.join(sorted(cited))})" if cited else ''))
            elif cited: out.append(f"{path.name}: cites {', '.join(sorted(cited))} but has no '## References' cell")
            continue
        listed = set(_LISTED.findall(refs))
        for d in sorted(set(cited) - listed):
            out.append(f"{path.name}: cites document {d} ({len(cited[d])}×, e.g. {cited[d][0]!r}) but its References cell does not list [{d}]")
    return out


@pytest.mark.parametrize('text, docs', [
    ('the CLIP loss (001 Eq. 27) and 002 Table 1; 003 §4 and 003 Fig. 2', {'001', '002', '003'}),
    ('SiLC (document 003, with a second description in the review 004)', {'003', '004'}),
    ('(the thesis, seed 001; the CLIP-distillation paper, 002; SiLC, 003)', {'001', '002', '003'}),
    ('[000] Tiwawongrut & Silpasuwanchai', {'000'}),
    ('5,000 x 25,000 images (5,000 x 25,000), 10 000 items (10 000), a cos of 1.000 (1.000), cell c001, range(1000)', set()),
    ('the 003 model and 002 students', set()),  # a bare number with no locator, brackets or parentheses is not a citation
])
def test_citations(text, docs):
    assert set(citations(text)) == docs


def test_every_citation_resolves():
    found = problems()
    assert not found, ("references to source documents that do not resolve (add the document to the notebook's '## References' "
                       "cell, right before its final nbdev_export cell, and to the bibliography of index.ipynb):\n  " + '\n  '.join(found))


def test_bibliography_entries():
    "Each source document's bibliography entry names authors, a title and a venue or status with a year."
    bib = references_cell(NBS / 'index.ipynb')
    assert bib is not None, "index.ipynb has no '## References' cell"
    for doc in DOCS:
        line = next((l for l in bib.splitlines() if f'[{doc}]' in l), '')
        assert re.search(r'(19|20)\d\d|under review|undated', line), f"index bibliography entry [{doc}] gives no year or status: {line!r}"


def test_problems_name_the_notebook_and_the_document(tmp_path):
    "A failure says which notebook cites which document that its References cell or the bibliography lacks."
    def nb(name, *cells):
        (tmp_path / f'{name}.ipynb').write_text(json.dumps(dict(cells=[dict(cell_type=t, source=s) for t, s in cells])))
    nb('index', ('markdown', '## References\n\n| [000] a 2020 | [001] b 2024 | [002] c, under review | [003] d 2024 |'))
    nb('05_x', ('markdown', 'As in 003 Table 2 and the review (004).'), ('code', "claim = '003 §4'"),
       ('markdown', '## References\n\n- **[003] Naeem et al. 2024**'), ('code', 'import nbdev; nbdev.nbdev_export()'))
    nb('06_y', ('markdown', 'See 002 Eq. 1.'))
    nb('99_reproduce', ('markdown', 'Runs every chapter.'))
    assert problems(tmp_path) == [
        'index.ipynb: the bibliography (## References) does not list [004]',
        "05_x.ipynb: cites document 004 (1×, e.g. 'le 2 and the review (004).') but its References cell does not list [004]",
        "06_y.ipynb: no '## References' markdown cell (it cites 002)"]
