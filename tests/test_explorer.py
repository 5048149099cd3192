"""The explorer's callbacks, driven headless (no kernel, no browser): set widget values, read figure and tables.

The notebook (nbs/07_explorer.ipynb) shows the happy path; this file holds the bad-input matrix and the
widget <-> state round trips a cell would make unreadable.
"""
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from gcav_nb.config import GcavInputError, UnknownNameError
from gcav_nb.explorer import (RESULTS_COLUMNS, Explorer, check_results, demo_results, layer_report, plot_layer_curves,
                              stability_summary)


@pytest.fixture
def table(): return demo_results(n_layers=8, seed=1)


def _xs(fig: Figure, label: str) -> list[int]:
    "The x values of one method's curve (an errorbar container labelled with the method)."
    curve = next(c for c in fig.axes[0].containers if c.get_label() == label)
    return [int(x) for x in curve[0].get_xdata()]


def test_widget_changes_update_figure_and_tables(table):
    "Setting each widget's value updates the selection, the curves, the per-layer report and both output areas."
    ex = Explorer(table)
    w = ex.widgets
    w['concept'].value = 'praise'; w['target'].value = "logit(' positive')"
    assert (ex.concept, ex.target) == ('praise', "logit(' positive')")
    want = layer_report(table, concept='praise', target="logit(' positive')")
    pd.testing.assert_frame_equal(ex.report, want)
    assert ex.figure.axes[0].get_title().startswith("praise → logit(' positive')")
    w['layers'].value = (2, 5)
    assert ex.report.index.tolist() == [2, 3, 4, 5]
    assert _xs(ex.figure, 'TCAV') == _xs(ex.figure, 'TGCAV') == [2, 3, 4, 5]
    assert len(w['plot'].outputs) == 1 and len(w['table'].outputs) == 2
    assert 'image/png' in w['plot'].outputs[0]['data'] or 'text/plain' in w['plot'].outputs[0]['data']


def test_plain_select_and_widgets_agree(table):
    "select() and the widgets are one state: no path can make them disagree."
    ex = Explorer(table)
    w = ex.widgets
    ex.select(concept='food', layers=(1, 3))
    assert ex.report.index.tolist() == [1, 2, 3]
    w['concept'].value = 'complaint'
    assert ex.concept == 'complaint' and ex.report.index.tolist() == [1, 2, 3]   # the layer range is kept


def test_significance_marks_follow_the_table(table):
    "Filled markers are exactly the significant layers; hollow ones the others."
    t = table.copy()
    sel = (t.concept == 'food') & (t.target == "logit(' positive')") & (t.method == 'TCAV')
    t.loc[sel, 'significant'] = t.loc[sel, 'layer'].isin([0, 3])
    fig = plot_layer_curves(t, concept='food', target="logit(' positive')")
    tcav = next(i for i, c in enumerate(fig.axes[0].containers) if c.get_label() == 'TCAV')
    marks = [c for c in fig.axes[0].collections if c.get_gid() in ('significant', 'not significant')]
    filled, hollow = marks[2 * tcav], marks[2 * tcav + 1]                # per curve: its filled, then its hollow markers
    assert filled.get_gid() == 'significant' and sorted(int(x) for x in filled.get_offsets()[:, 0]) == [0, 3]
    assert sorted(int(x) for x in hollow.get_offsets()[:, 0]) == [1, 2, 4, 5, 6, 7]


def test_stability_summary_matches_numpy(table):
    "Mean, std (ddof=0) and CV per method agree with numpy on the report's columns."
    rep = layer_report(table, concept='food', target="logit(' negative')")
    s = stability_summary(rep)
    for m in ('TCAV', 'TGCAV'):
        x = rep[f'{m} score'].to_numpy()
        assert s.loc[m, 'mean'] == pytest.approx(x.mean()) and s.loc[m, 'std'] == pytest.approx(x.std())
        assert s.loc[m, 'cv'] == pytest.approx(x.std() / x.mean())


def test_compute_runs_once_per_new_selection():
    "With a compute function the explorer runs it only for selections it has not seen, and keeps the rows."
    calls = []
    def compute(model, concept, target):
        calls.append(concept)
        return demo_results(n_layers=4, concepts=(concept,), targets=(target,), model=model, seed=len(calls))
    ex = Explorer(compute=compute, choices=dict(model=['m'], concept=['a', 'b'], target=['t']))
    ex.widgets['concept'].value = 'b'
    ex.widgets['concept'].value = 'a'
    assert calls == ['a', 'b'] and sorted(ex.results.concept.unique()) == ['a', 'b']


@pytest.mark.parametrize('mutate,err,msg', [
    (lambda d: d.drop(columns='score'), GcavInputError, "['score']"),
    (lambda d: d.drop(columns=['p_value', 'significant']), GcavInputError, "['p_value', 'significant']"),
    (lambda d: d.assign(method='tcav'), GcavInputError, "'tcav'"),
    (lambda d: d.assign(score=1.5), GcavInputError, "[0, 1]"),
    (lambda d: d.iloc[:0], GcavInputError, "empty"),
    (lambda d: pd.concat([d, d.iloc[:1]]), GcavInputError, "duplicate"),
    (lambda d: d.to_dict('records'), TypeError, "DataFrame"),
])
def test_bad_results_tables_are_refused(table, mutate, err, msg):
    "Each malformed table fails before drawing, naming what is wrong."
    with pytest.raises(err, match=None) as e: check_results(mutate(table))
    assert msg in str(e.value)


@pytest.mark.parametrize('kw,err,msg', [
    (dict(concept='cats'), UnknownNameError, "'cats'"),
    (dict(target='logit(x)'), UnknownNameError, "'logit(x)'"),
    (dict(model='gpt9'), UnknownNameError, "'gpt9'"),
    (dict(layers=(5, 2)), GcavInputError, 'empty'),
])
def test_bad_selections_are_refused(table, kw, err, msg):
    "Unknown names list the known ones; an inverted layer range is refused."
    with pytest.raises(err) as e: Explorer(table).select(**kw)
    assert msg in str(e.value)


def test_explorer_needs_data():
    "No table and no compute function, or compute without choices, is an error at construction."
    with pytest.raises(GcavInputError, match='results table or a compute'): Explorer()
    with pytest.raises(GcavInputError, match='choices'): Explorer(compute=lambda *a: None)


def test_schema_constant_lists_the_required_columns():
    "RESULTS_COLUMNS is the schema the docs and the lead's wiring rely on."
    assert list(RESULTS_COLUMNS) == ['concept', 'target', 'layer', 'method', 'score', 'score_sd', 'p_value',
                                     'significant', 'cav_accuracy']


def test_explorer_reads_a_real_pipeline_result(tmp_path):
    "A tiny `gcav_nb tcav` run: the result object and the CLI's results.csv give the same explorer table, model and target included."
    from gcav_nb.cli import run
    from gcav_nb.explorer import results_from_tests
    r = run(["tcav", "--model", "tiny-llama", "--scale", "ci", "--concepts", "praise,food", "--out", str(tmp_path / "o"),
             "--no-progress", "--no-cache"])
    a, b = results_from_tests(r["result"]), results_from_tests(tmp_path / "o" / "results.csv")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert a.model.unique().tolist() == ["tiny-llama"] and a.target.unique().tolist() == [r["settings"]["target"]]
    ex = Explorer(a)
    assert ex.report.index.tolist() == [0, 1, 2, 3] and set(ex.concept for _ in [0]) <= {"praise", "food"}


def test_explorer_and_concept_result_draw_with_the_one_plot(monkeypatch, table):
    "The explorer's figure comes from tcav.plot_scores, the function ConceptResult.plot draws with (one layer plot)."
    import gcav_nb.explorer as E, gcav_nb.tcav as T
    seen = []
    real = T.plot_scores
    monkeypatch.setattr(E, 'plot_scores', lambda t, *a, **k: seen.append(sorted(t.method.unique())) or real(t, *a, **k))
    Explorer(table).select(concept='food')
    assert seen and seen[-1] == ['TCAV', 'TGCAV'] and E.plot_scores is not None and not hasattr(E, '_COLORS')
