"""Submission/solution files: exact text written, round trips, one-line errors naming row and problem; `kit score`."""
import numpy as np
import pandas as pd
import pytest

from kit.cli import main
from kit.errors import KitError
from kit.metrics import gap_frames
from kit.predictions import Predictions
from kit.submission import predictions_to_frame, read_solution, read_submission, write_submission


def write(path, text):
    path.write_text(text)
    return path


def test_write_exact_text_and_round_trip(tmp_path):
    df = pd.DataFrame({"id": ["00ab", "01cd", "0123"], "label": [12, -1, 7], "score": [0.5, 0.0, 1.25e-05]})
    out = write_submission(df, tmp_path / "sub.csv")
    assert out.read_text() == "id,landmarks\n00ab,12 0.5\n01cd,\n0123,7 1.25e-05\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]  # no temp file left behind
    back = read_submission(out, sample_ids=["0123", "01cd", "00ab"])
    assert back["id"].tolist() == ["00ab", "01cd", "0123"]   # ids stay strings (leading zeros kept)
    assert back["label"].tolist() == [12, -1, 7]
    assert back["score"].tolist() == [0.5, 0.0, 1.25e-05]


def test_predictions_float32_scores_survive_the_file(tmp_path):
    scores = np.array([[0.1234567, 0.1], [0.1234568, 0.1], [0.0, 0.0]], np.float32)
    pred = Predictions(["a", "b", "c"], [[3, 4], [5, 6], [-1, -1]], scores)
    frame = predictions_to_frame(pred)
    assert frame["label"].tolist() == [3, 5, -1]
    back = read_submission(write_submission(pred, tmp_path / "s.csv"))
    assert np.array_equal(back["score"].to_numpy().astype(np.float32), frame["score"].to_numpy())
    sol = pd.DataFrame({"id": ["a", "b", "c"], "landmarks": [[3], [6], []]})
    # b (wrong) outranks a (correct) by 1e-7: P(2) = 1/2 over M = 2; rounding to 6 digits would tie them
    assert gap_frames(back, sol) == gap_frames(frame, sol) == pytest.approx(0.25)


def test_write_rejects_duplicates_and_nan_without_creating_a_file(tmp_path):
    with pytest.raises(KitError, match="duplicate id a"):
        write_submission(pd.DataFrame({"id": ["a", "a"], "label": [1, 2], "score": [0.1, 0.2]}), tmp_path / "x.csv")
    with pytest.raises(KitError, match="non-finite score nan at row 2"):
        write_submission(pd.DataFrame({"id": ["a", "b"], "label": [1, 2], "score": [0.1, np.nan]}), tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("body, message", [
    ("a,1 0.5\nb,2 0.5\na,3 0.1\n", r"row 3 \(line 4\): duplicate id a \(first at row 1\)"),
    ("a,1 0.5\nb,x1 0.5\n", r"row 2 \(line 3\): landmark id 'x1' is not a non-negative integer"),
    ("a,1 0.5\nb,-4 0.5\n", r"row 2 \(line 3\): landmark id '-4'"),
    ("a,1 0.5 2 0.3\n", r"row 1 \(line 2\): landmarks '1 0.5 2 0.3' is not '<landmark_id> <score>'"),
    ("a,17\n", r"row 1 \(line 2\): landmarks '17' is not"),
    ("a,1 0.5\nb,2 inf\n", r"row 2 \(line 3\): score 'inf' is not a finite number"),
    ("a,1 0.5\nb,2 high\n", r"row 2 \(line 3\): score 'high' is not a finite number"),
    (",1 0.5\n", r"row 1 \(line 2\): empty id"),
])
def test_read_submission_errors_name_file_row_and_problem(tmp_path, body, message):
    path = write(tmp_path / "bad.csv", "id,landmarks\n" + body)
    with pytest.raises(KitError, match=r"bad\.csv: " + message):
        read_submission(path)


def test_read_submission_checks_columns_and_sample_ids(tmp_path):
    with pytest.raises(KitError, match="missing column"):
        read_submission(write(tmp_path / "c.csv", "id,landmark\na,1 0.5\n"))
    path = write(tmp_path / "s.csv", "id,landmarks\na,1 0.5\nz,\n")
    with pytest.raises(KitError, match=r"row 2 \(line 3\): id z is not in sample_submission"):
        read_submission(path, sample_ids=["a", "b"])
    with pytest.raises(KitError, match=r"1 id\(s\) of sample_submission.csv missing \(first: b\)"):
        read_submission(path, sample_ids=["a", "b", "z"])


def test_read_solution_multi_landmark_and_usage(tmp_path):
    path = write(tmp_path / "sol.csv", "id,landmarks,Usage\na,1 2,Public\nb,,Private\nc,30,Ignored\n")
    sol = read_solution(path)
    assert sol["landmarks"].tolist() == [[1, 2], [], [30]]
    assert sol["usage"].tolist() == ["Public", "Private", "Ignored"]
    with pytest.raises(KitError, match=r"sol2\.csv: row 2 \(line 3\): landmark id 'q'"):
        read_solution(write(tmp_path / "sol2.csv", "id,landmarks\na,1\nb,2 q\n"))


def test_kit_score_prints_gap_last(tmp_path, capsys):
    sol = write(tmp_path / "sol.csv", "id,landmarks\na,1\nb,2\nc,\nd,3\n")
    sub = write(tmp_path / "sub.csv", "id,landmarks\na,1 0.9\nb,2 0.7\nc,5 0.8\nd,\n")
    sample = write(tmp_path / "sample.csv", "id,landmarks\na,\nb,\nc,\nd,\n")
    assert main(["score", str(sub), str(sol), "--sample", str(sample)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "GAP 0.555556"                                  # (1 + 2/3) / 3
    assert "accuracy (landmark images) 0.666667" in lines                 # a, b right of a, b, d
    assert "sensitivity 0.666667  specificity 0.000000" in lines          # c predicted: not rejected
    bad = write(tmp_path / "bad.csv", "id,landmarks\na,1 0.9\na,2 0.7\n")
    assert main(["score", str(bad), str(sol)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.csv: row 2 (line 3): duplicate id a" in err


def test_kit_score_usage_subset(tmp_path, capsys):
    sol = write(tmp_path / "sol.csv", "id,landmarks,Usage\na,1,Public\nb,2,Private\nc,,Ignored\n")
    sub = write(tmp_path / "sub.csv", "id,landmarks\na,1 0.2\nb,9 0.9\nc,4 0.95\n")
    expected = {"all": "GAP 0.250000",      # c ignored; b wrong at rank 1, a right at rank 2: (1/2)/2
                "public": "GAP 1.000000", "private": "GAP 0.000000"}
    for usage, line in expected.items():
        assert main(["score", str(sub), str(sol), "--usage", usage]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1] == line
