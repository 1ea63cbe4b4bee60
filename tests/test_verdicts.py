"Every method chapter's committed verdict file is complete and its verdicts follow from their own intervals and gates."
import json
import pytest
from vlkd.evaluate import VERDICT_FIELDS, check_verdicts, verdict_of
from vlkd.utils import figures_dir

STEMS = ['02_featkd', '03_shre', '04_ema_text', '05_silc', '06_capgap']


@pytest.mark.parametrize('stem', STEMS)
def test_verdict_file(stem):
    path = figures_dir() / f'{stem}_verdicts.json'
    assert path.exists(), f"{path} is missing: `make reproduce` writes it"
    rows = json.loads(path.read_text())
    assert isinstance(rows, list) and rows, f"{path}: not a non-empty list of rows"
    for r in rows:
        assert set(VERDICT_FIELDS) <= set(r), f"{path}: {r.get('claim')!r} lacks {sorted(set(VERDICT_FIELDS) - set(r))}"
        lo, hi = (float('nan') if x is None else x for x in (r['ci_low'], r['ci_high']))
        assert r['verdict'] == verdict_of(lo, hi, r['gates'], r.get('claimed', '>')), f"{path}: {r['claim']!r}"
        assert isinstance(r['arms'], list) and len(r['arms']) == 2 and r['n'] >= 1
        if r['n'] >= 2 and r['ci_low'] is not None: assert r['ci_low'] <= r['mean_diff'] <= r['ci_high']
    check_verdicts(rows)
    md = path.with_suffix('.md')
    assert md.exists() and md.read_text().count('\n') >= len(rows) + 2, f"{md} missing or shorter than the JSON"


def test_check_catches_a_wrong_verdict(tmp_path):
    "The check itself can fail: a row whose verdict disagrees with its CI is refused."
    row = dict(claim='a beats b', source='x', metric='acc', arms=['a', 'b'], n=3, mean_diff=1.0, ci_low=0.5, ci_high=1.5,
               gates=[dict(name='t', value=95.0, threshold=90.0, passed=True)], verdict='inconclusive')
    with pytest.raises(ValueError, match="its CI and gates say 'supported'"): check_verdicts([row])
    with pytest.raises(ValueError, match="lacks"): check_verdicts([{k: v for k, v in row.items() if k != 'n'}])
