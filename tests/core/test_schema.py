"""A declared schema: fixed ranges and categories, no statistic of any site's records."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.data import csv_federation, load_schema
from securefl.data.schema import Column, Schema, schema_from_dict
from securefl.errors import ConfigError, DataError
from securefl.simulation.advice import learned_nothing_hint

SCHEMA = Schema(
    columns=(
        Column(name="age", type="numeric", range=(0, 100)),
        Column(name="sex", type="categorical", categories=("F", "M")),
    )
)


def _rows(*cells):
    return [(i + 2, c) for i, c in enumerate(cells)]


def test_numeric_scaled_to_minus_one_one_and_categories_one_hot():
    res = SCHEMA.transform("x.csv", ["sex", "age"], _rows(("M", "0"), ("F", "50"), ("M", "100")))
    np.testing.assert_allclose(res.features, [[-1, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert SCHEMA.feature_names == ("age", "sex=F", "sex=M")
    assert not res.clipped and res.clip_warning("site") is None


def test_values_outside_the_range_are_clipped_and_counted():
    res = SCHEMA.transform("x.csv", ["age", "sex"], _rows(("-5", "F"), ("250", "M"), ("7", "F")))
    assert res.features[:, 0].tolist() == [-1.0, 1.0, pytest.approx(-0.86)]
    assert res.clipped == {"age": 2}
    assert "2 value(s)" in (res.clip_warning("ward") or "")


def test_an_undeclared_category_or_column_is_refused_with_the_line():
    with pytest.raises(DataError, match="line 3: column 'sex' has 'male'"):
        SCHEMA.transform("x.csv", ["age", "sex"], _rows(("1", "F"), ("2", "male")))
    with pytest.raises(DataError, match="'bmi' is not declared"):
        SCHEMA.transform("x.csv", ["age", "sex", "bmi"], _rows(("1", "F", "20")))
    with pytest.raises(DataError, match="declares 'sex', absent"):
        SCHEMA.transform("x.csv", ["age"], _rows(("1",)))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=20))
def test_each_record_is_transformed_alone(values):
    """Record-wise: a row's features do not depend on the other rows (no statistics)."""
    rows = _rows(*[(repr(v), "F") for v in values])
    together = SCHEMA.transform("x.csv", ["age", "sex"], rows).features
    alone = np.vstack([SCHEMA.transform("x.csv", ["age", "sex"], [r]).features for r in rows])
    np.testing.assert_array_equal(together, alone)
    assert np.all(np.abs(together) <= 1.0)


def test_sites_do_not_share_statistics(tmp_path):
    """A site's transformed records are the same whatever the other sites hold."""
    header = "age,sex,y\n"
    a = tmp_path / "a.csv"
    a.write_text(header + "".join(f"{20 + i},F,{i % 2}\n" for i in range(12)), encoding="utf-8")
    small = tmp_path / "b.csv"
    small.write_text(header + "".join(f"{30 + i},M,{i % 2}\n" for i in range(12)), encoding="utf-8")
    huge = tmp_path / "c.csv"
    huge.write_text(header + "".join(f"{90 + 50 * i},M,{i % 2}\n" for i in range(12)), "utf-8")
    one = csv_federation([("a", a), ("b", small)], label="y", schema=SCHEMA)
    two = csv_federation([("a", a), ("b", huge)], label="y", schema=SCHEMA)
    np.testing.assert_array_equal(one.sites[0].x_train, two.sites[0].x_train)
    assert one.preprocessing == "schema" and not one.warnings
    assert len(two.warnings) == 1 and two.warnings[0].startswith("b:")


def test_schema_files_in_toml_and_json(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[[columns]]\nname = "age"\ntype = "numeric"\nrange = [0, 100]\n\n'
        '[[columns]]\nname = "sex"\ntype = "categorical"\ncategories = ["F", "M"]\n',
        encoding="utf-8",
    )
    js = tmp_path / "s.json"
    js.write_text(
        json.dumps(
            {
                "columns": [
                    {"name": "age", "type": "numeric", "range": [0, 100]},
                    {"name": "sex", "type": "categorical", "categories": ["F", "M"]},
                ]
            }
        ),
        encoding="utf-8",
    )
    assert load_schema(toml) == load_schema(js) == SCHEMA


@pytest.mark.parametrize(
    "doc, needle",
    [
        ({"columns": [{"name": "a", "type": "numeric"}]}, "range = \\[lo, hi\\]"),
        ({"columns": [{"name": "a", "type": "numeric", "range": [3, 1]}]}, "lo < hi"),
        ({"columns": [{"name": "a", "type": "categorical", "categories": []}]}, "categories"),
        ({"columns": [{"name": "a", "type": "text"}]}, "type must be"),
        ({"columns": [{"name": "a", "type": "numeric", "range": [0, 1], "unit": "m"}]}, "unit"),
        ({"cols": []}, "exactly one list 'columns'"),
    ],
)
def test_bad_schemas_name_the_problem(doc, needle):
    with pytest.raises(ConfigError, match=needle):
        schema_from_dict(doc)


def test_a_run_at_the_majority_rate_gets_a_hint(tmp_path):
    header = "age,sex,y\n"
    paths = []
    for name in "ab":
        p = tmp_path / f"{name}.csv"
        p.write_text(header + "".join(f"{i},1,{int(i % 4 == 0)}\n" for i in range(40)), "utf-8")
        paths.append((name, p))
    data = csv_federation(paths, label="y")  # 3 in 4 records are class 0
    majority = 0.75
    hint = learned_nothing_hint(data, majority, epsilon=1.0, rounds=12)
    assert hint is not None
    assert "--epsilon 2" in hint and "--rounds 24" in hint and "--schema" in hint
    assert learned_nothing_hint(data, 0.9, epsilon=1.0, rounds=12) is None
    coded = Schema(
        columns=(SCHEMA.columns[0], Column(name="sex", type="categorical", categories=("1", "2")))
    )
    with_schema = csv_federation(paths, label="y", schema=coded)
    declared = learned_nothing_hint(with_schema, 0.5, epsilon=1, rounds=3)
    assert declared is not None and "--schema" not in declared


def test_the_federation_file_names_the_schema_relative_to_itself(tmp_path):
    from securefl.config import load_federation

    (tmp_path / "conf").mkdir()
    fed = tmp_path / "conf" / "fed.toml"
    fed.write_text('[data]\nschema = "columns.toml"\n', encoding="utf-8")
    assert load_federation(fed).data.schema == str(tmp_path / "conf" / "columns.toml")
    fed.write_text("[federation]\nname = 'x'\n", encoding="utf-8")
    assert load_federation(fed).data.schema is None
    fed.write_text('[data]\nschema = ""\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.schema"):
        load_federation(fed)
    fed.write_text('[data]\nscheme = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.scheme"):
        load_federation(fed)
