"""The "Output for scripts" section of docs/cli.md: ``--json``, ``--quiet``, ``--verbose``, the
shared option conventions and the JSON document of each command (kept beside the CLI code that
writes them; tests/test_cli_conventions.py checks the documents against this text)."""

SCRIPTING = """\
## Output for scripts

Every command follows the same conventions.

* **Exit codes**: 0 done; 1 error (one `error: ...` line on stderr; nothing written, except
  what docs/reliability.md lists: the manifest of a failed harmonize, the predictions.csv of a
  failed segment predict, train's cache); 2 usage error; 3 partial (some cases failed or some
  files of the site were ignored; the others are written); 130 interrupted
  (docs/reliability.md).
* **stdout and stderr**: tables, messages and the final result line go to stdout; progress bars,
  errors and the warnings of a command at work (`harmonize`, `segment train`) go to stderr.
* **`--quiet` / `-q`** (before the command, `harmonix --quiet harmonize ...`, or after it): errors
  and the final result line only; no progress bars, tables or warnings.
* **`--verbose` / `-v`**: extra detail on stderr (each case's files and messages, the files a
  report wrote) and debug logging of the `harmonix` loggers. The last of `--quiet` and
  `--verbose` given wins.
* **`--json`** (`inspect`, `harmonize`, `segment predict`, `evaluate`, `plugins`, `models
  list`): exactly one JSON document on stdout; everything else (tables, progress, warnings,
  the result line) goes to stderr. The exit code is the same as without `--json`. An error
  before the command's document is written (a missing site, a bad model) writes `{"command",
  "version", "exit_code", "error"}` instead; a usage error (exit 2 from the option parser) and
  Ctrl-C (130) write nothing on stdout. Paths are strings; numbers that are not finite are
  `null`.
* **Option names**: `--batch-size N` wherever a batch is set (`--batch` is a deprecated alias of
  `harmonix train`); `--device DEVICE` with default `auto` (CUDA when present, else the CPU);
  repeatable `KEY=VALUE` options (`--backbone-option`, `--recipe`, `--option`) share one parser:
  the value is YAML (`16`, `true`, `[1, 2]`), a number such as `1e-4`, or a comma-separated
  list of numbers (`8,16,32`); `--recipe` passes the text to the trainer, which checks it. A
  malformed pair is a usage error naming the option.

Every JSON document starts with `command`, `version` and `exit_code`.

### `harmonix inspect --json`

```json
{"command": "inspect", "version": "...", "exit_code": 0,
 "site": {"root": "data/local", "center": "local", "layout": "flat",
          "label_convention": "brats2019"},
 "quick": false,
 "sequences": ["t1", "t2"],
 "counts": {"cases": 4, "ok": 3, "with_problems": 1, "complete": 3, "labelled": 4,
            "problems": 1, "warnings": 2, "ignored": 0, "per_sequence": {"t1": 4, "t2": 3}},
 "cases": [{"id": "P001", "status": "ok",
            "sequences": {"t1": "data/local/P001/P001_t1.nii.gz"}, "missing": ["t2"],
            "label": "data/local/P001/P001_seg.nii.gz", "reference": "t1",
            "shape": [240, 240, 155], "spacing": [1.0, 1.0, 1.0], "orientation": "LPS",
            "problems": [], "warnings": []}],
 "problems": [{"path": "...", "kind": "unreadable", "message": "...", "case": "P004"}],
 "warnings": [{"path": "...", "kind": "warning", "message": "...", "case": "P002"}]}
```

`status` is `ok` or `problems`; `exit_code` is 1 when `problems` is not empty; a `problems` entry
with `case: null` is a file or folder of the site that belongs to no case (`ignored`).

### `harmonix harmonize --json`

```json
{"command": "harmonize", "version": "...", "exit_code": 0,
 "site": "data/local", "out": "out/local", "manifest": "out/local/manifest.csv",
 "shard": null, "merged_manifest": null,
 "counts": {"cases": 4, "done": 3, "skipped": 1, "failed": 0, "ignored": 0, "warnings": 0,
            "real": 9, "generated": 7, "aligned": 0, "original": 0},
 "cases": [{"case": "P001", "status": "done", "seconds": 2.1,
            "files": [{"sequence": "t2", "status": "generated", "source": "local/t1",
                       "file": "out/local/P001/P001_t2.nii.gz", "coverage": 1.0,
                       "message": ""}]}],
 "failed": [],
 "ignored": [{"path": "...", "kind": "dicom", "message": "..."}],
 "warnings": [{"path": "...", "kind": "warning", "message": "..."}]}
```

A case's `status` is `done`, `skipped` (already complete) or `failed`; a file's `status` is
`real`, `generated`, `aligned`, `original` or `failed` (the rows of `manifest.csv`, with `file`
made a full path). `shard` is `K/N` under `--shard`; `merged_manifest` is the site manifest
when this shard merged the parts.

### `harmonix evaluate --json`

```json
{"command": "evaluate", "version": "...", "exit_code": 0,
 "out": "report", "report": "report/report.md",
 "files": {"results": "report/results.csv", "medians": "report/table1_median_dice.csv"},
 "counts": {"cases": 30, "scenarios": 14, "strategies": 3, "results": 3780},
 "cases": ["P001"], "scenarios": ["t1", "t1+t2"], "strategies": ["complete", "copy"],
 "medians": [{"scenario": "t1", "strategy": "copy", "region": "WT", "dice": 0.81}],
 "tests": {"wilcoxon": [{"scenario": "t1", "region": "WT", "n": 30, "p_holm": 0.01,
                         "verdict": "generated better", "...": "..."}],
           "friedman": [], "dunn": []},
 "notes": []}
```

`counts.cases`, `scenarios` and `strategies` count the Dice rows of `results.csv`
(`counts.results` counts all its rows); `tests` holds the statistics tables of the report
(column names as in their CSV files).

### `harmonix segment predict --json`

```json
{"command": "segment predict", "version": "...", "exit_code": 0,
 "site": "data/local", "out": "seg/local", "shard": null,
 "counts": {"cases": 4, "done": 3, "skipped": 1, "failed": 0},
 "cases": [{"case": "P001", "status": "done", "file": "seg/local/P001/P001_seg.nii.gz",
            "message": "", "coverage": 1.0, "synthetic_inputs": ["t2"]}],
 "failed": []}
```

A case's `status` is `done`, `skipped` (a label map harmonix wrote before; `--overwrite` redoes
it) or `failed`; `coverage` is the fraction of its brain inside the segmenter's crop (the check
of `--min-coverage`, as harmonize's); `synthetic_inputs` the inputs harmonize made. `exit_code`
is 3 when some cases failed, 1 when all did.

### `harmonix plugins --json`

```json
{"command": "plugins", "version": "...", "exit_code": 0,
 "counts": {"plugins": 11, "ok": 11, "not_ok": 0, "by_kind": {"backbone": 3, "metric": 5}},
 "plugins": [{"kind": "backbone", "name": "swin", "plugin": "swin",
              "distribution": "harmonix", "version": "0.1.0", "status": "ok"}]}
```

`status` is `ok`, `clash: ...` or `failed: ...`.

### `harmonix models list --json`

```json
{"command": "models list", "version": "...", "exit_code": 0, "models_dir": "...",
 "counts": {"models": 1, "ok": 1},
 "models": [{"name": "brats-tiny", "path": "...", "kind": "generator", "plugin": "ummgat",
             "inputs": ["brats/t1"], "preset": "tiny", "iteration": 2000, "problem": ""}]}
```
"""
