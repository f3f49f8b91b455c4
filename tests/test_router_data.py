"""Reading labelled rows: RouteLLM CSV layouts, JSON Lines, contamination lists, bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from crossroads.learned.data import (
    LabelledRow,
    RouterDataError,
    read_csv,
    read_jsonl,
    read_rows,
    score_table,
)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_boolean_columns_and_response_lengths(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "gsm.csv",
        "prompt,weak,strong,weak_response,strong_response\n"
        '"What is 2+2?\nAnswer:",True,True,abcdefgh,abcd\n'
        "Hard one,False,True,,abcdefghijkl\n",
    )
    rows = read_csv(path)
    assert rows == [
        LabelledRow("What is 2+2?\nAnswer:", "weak", 1.0, completion_tokens=2.0, source="gsm"),
        LabelledRow("What is 2+2?\nAnswer:", "strong", 1.0, completion_tokens=1.0, source="gsm"),
        LabelledRow("Hard one", "weak", 0.0, completion_tokens=None, source="gsm"),
        LabelledRow("Hard one", "strong", 1.0, completion_tokens=3.0, source="gsm"),
    ]


def test_numeric_scores_text_columns_and_empty_cells(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "judged.csv",
        "Unnamed: 0,prompt,topic,model-a,model-b\n0,p1,law,0.25,1\n1,p2,math,,0.5\n",
    )
    rows = read_csv(path)
    assert [(r.prompt, r.model, r.score) for r in rows] == [
        ("p1", "model-a", 0.25),
        ("p1", "model-b", 1.0),
        ("p2", "model-b", 0.5),
    ]


def test_contaminated_prompts_beside_or_one_level_up_are_dropped(tmp_path: Path) -> None:
    _write(
        tmp_path / "mmlu_contaminated_prompts.jsonl",
        json.dumps({"train_prompt": "x", "eval_prompt": "leaked A"}) + "\n",
    )
    _write(tmp_path / "mmlu" / "more_contaminated_prompts.jsonl", '{"prompt": "leaked B"}\n')
    _write(tmp_path / "mmlu" / "mmlu_law.csv", "prompt,m\nleaked A,1\nleaked B,0\nclean,1\n")
    rows = read_rows([tmp_path])
    assert [r.prompt for r in rows] == ["clean"]
    assert rows[0].source == "mmlu_law"


def test_jsonl_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "feedback.jsonl",
        '{"prompt": "hi", "model": "a", "score": true}\n\n'
        '{"prompt": "hi", "model": "b", "score": 0.5, "cost": 0.001, "completion_tokens": 12}\n',
    )
    assert read_jsonl(path) == [
        LabelledRow("hi", "a", 1.0, source="feedback"),
        LabelledRow("hi", "b", 0.5, cost=0.001, completion_tokens=12.0, source="feedback"),
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.csv", "question,m\nq,1\n", "no 'prompt' column"),
        ("b.csv", "prompt,m\nq,3\n", "column 'm' holds '3'"),
        ("c.csv", "prompt,m\nq,yes\nr,maybe\n", "column 'm' holds 'maybe'"),
        ("d.csv", "prompt,notes\nq,hello\n", "no score columns"),
        ("e.csv", "prompt,m\n", "no rows"),
        ("f.jsonl", '{"prompt": "q", "model": "m", "score": 2}\n', "f.jsonl:1: 'score'"),
        ("g.jsonl", '{"prompt": "q", "score": 1}\n', "'model' must be"),
        ("h.jsonl", "not json\n", "h.jsonl:1: not JSON"),
        ("i.jsonl", '{"prompt": "q", "model": "m", "score": 1, "cost": -1}\n', "'cost'"),
        ("j.txt", "prompt,m\nq,1\n", "expected a .csv"),
    ],
)
def test_bad_files_say_what_to_fix(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = _write(tmp_path / name, text)
    with pytest.raises(RouterDataError, match=message.replace("(", r"\(")):
        read_rows([path])


def test_missing_paths_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(RouterDataError, match="no such file"):
        read_rows([tmp_path / "nope.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RouterDataError, match=r"no \.csv or \.jsonl files"):
        read_rows([tmp_path / "empty"])


def test_non_utf8_csv(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("prompt,m\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(RouterDataError, match="UTF-8"):
        read_csv(path)


def test_score_table_pivots_and_averages_repeats() -> None:
    table = score_table(
        [
            LabelledRow("p", "a", 1.0, completion_tokens=10),
            LabelledRow("p", "a", 0.0, completion_tokens=20),
            LabelledRow("q", "b", 0.5, source="s"),
        ]
    )
    assert table.prompts == ["p", "q"]
    assert table.models == ["a", "b"]
    assert table.scores[0, 0] == 0.5
    assert math.isnan(table.scores[0, 1])
    assert table.completion_tokens[0, 0] == 15
    assert table.subset([1]).prompts == ["q"]
