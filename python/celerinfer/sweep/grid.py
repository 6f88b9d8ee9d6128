"""A sweep's grid file: a bench config, the benchmarks to run and a ``grid:`` of values per
key, expanded to cells (the product), each a full bench config checked by ``load_config``
before anything runs. A cell's id is a stable hash of what it measures."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..bench.config import benchmark_names, default_config, load_config, read_yaml

#: keys of a grid file besides the bench config's
SWEEP_KEYS = ("name", "benchmarks", "grid", "node_label")
#: sweep keys a grid may vary (per cell); the others describe the whole sweep
CELL_KEYS = ("node_label",)
#: list-valued config keys whose default is null
_LIST_KEYS = ("perplexity.weight_dtypes",)
#: a cell's config keys that do not change what it measures
_NOT_MEASURED = ("log_file",)


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its settings (grid key -> value), the bench config they give,
    the benchmarks, the node label it must run on (None: any node) and its id."""

    index: int
    settings: dict
    config: dict
    benchmarks: tuple
    node_label: str | None
    id: str

    @property
    def label(self) -> str:
        """'versions=v1 weight_dtype=int8': the settings that make this cell differ."""
        return settings_text(self.settings) or "(the config)"


@dataclass
class Sweep:
    """A grid file, read and checked: its name, its cells and where its records go."""

    name: str
    path: Path | None
    cells: list[Cell] = field(default_factory=list)
    log_file: str | None = None


def _text(value) -> str:
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return "null" if value is None else str(value)


def settings_text(settings: dict) -> str:
    return " ".join(f"{k}={_text(v)}" for k, v in settings.items())


def cell_id(config: dict, benchmarks, node_label: str | None) -> str:
    """16 hex digits of the SHA-256 of what a cell measures (its config but the log file, its
    benchmarks, its node label): the same on every machine and in every Python."""
    measured = {k: v for k, v in config.items() if k not in _NOT_MEASURED}
    text = json.dumps({"config": measured, "benchmarks": sorted(benchmarks), "node_label": node_label},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _config_keys() -> dict:
    """{key: its default} for every config key, nested ones dotted (perplexity.data)."""
    keys = {}
    for key, value in default_config().items():
        keys[key] = value
        if isinstance(value, dict):
            keys.update({f"{key}.{sub}": v for sub, v in value.items()})
    return keys


def _set(config: dict, key: str, value) -> None:
    section, dot, sub = key.partition(".")
    if dot:
        config.setdefault(section, {})[sub] = value
    else:
        config[section] = value


def _grid_values(grid, known: dict, base: dict) -> dict[str, list]:
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise ValueError("grid: must be a mapping of config keys to lists of values")
    out = {}
    for key, values in grid.items():
        if key not in known and key not in CELL_KEYS:
            raise ValueError(f"grid: unknown key {key!r}; known: the config's keys ({', '.join(sorted(known))}), "
                             f"{', '.join(CELL_KEYS)}")
        if key in _NOT_MEASURED:
            raise ValueError(f"grid: {key} cannot be swept: a sweep has one results log")
        if isinstance(known.get(key), dict):
            raise ValueError(f"grid: {key} is a section: sweep its keys ({key}.KEY)")
        section = key.partition(".")[0]
        if key in base or (section != key and isinstance(base.get(section), dict) and key.partition(".")[2]
                           in base[section]):
            raise ValueError(f"grid: {key} is also set outside the grid: set it in one place")
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid: {key} must be a non-empty list of values, got {values!r}")
        if isinstance(known.get(key), list) or key in _LIST_KEYS:  # each value is one cell's setting
            values = [v if isinstance(v, list) else [v] for v in values]
        texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise ValueError(f"grid: {key} lists a value twice: {', '.join(repeated)}")
        out[key] = values
    return out


def load_grid(path: str | Path, node_label: str | None = None) -> Sweep:
    """Reads a grid file and expands it (see :func:`expand`); ValueError names a bad key or
    value, and the cell, before anything runs. node_label: pins every cell (over the file's)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such grid file: {path}")
    spec = read_yaml(path)
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a grid file must be a YAML mapping (a bench config, benchmarks: and grid:)")
    return expand(spec, name=spec.get("name") or path.stem, path=path, node_label=node_label)


def expand(spec: dict, name: str = "sweep", path: Path | None = None, node_label: str | None = None) -> Sweep:
    """The cells of a grid given as a mapping (the keys of a grid file)."""
    spec = copy.deepcopy(spec)
    known = _config_keys()
    unknown = sorted(set(spec) - set(known) - set(SWEEP_KEYS))
    if unknown:
        config_keys = ", ".join(sorted(k for k in known if "." not in k))
        raise ValueError(f"unknown key(s) {unknown}; known: the config's keys ({config_keys}) and {', '.join(SWEEP_KEYS)}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: must be a non-empty string, got {name!r}")
    benchmarks = spec.pop("benchmarks", None)
    if benchmarks is not None and (not isinstance(benchmarks, list) or not all(isinstance(b, str) for b in benchmarks)):
        raise ValueError(f"benchmarks: must be a list of benchmark names, got {benchmarks!r}")
    benchmarks = tuple(benchmark_names(benchmarks))
    grid_spec = spec.pop("grid", None)
    label = spec.pop("node_label", None)
    spec.pop("name", None)
    log_file = spec.get("log_file")
    base = spec
    grid = _grid_values(grid_spec, known, base)
    if "node_label" in grid and label is not None:
        raise ValueError("grid: node_label is also set outside the grid: set it in one place")
    label = node_label or label
    if label is not None and not isinstance(label, str):
        raise ValueError(f"node_label: must be a string, got {label!r}")
    cells, seen = [], {}
    for index, combo in enumerate(itertools.product(*grid.values())):
        settings = dict(zip(grid, combo))
        overrides = copy.deepcopy(base)
        cell_label = label
        for key, value in settings.items():
            if key == "node_label":
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"grid: node_label values must be strings, got {value!r}")
                cell_label = node_label or value
            else:
                _set(overrides, key, value)
        where = settings_text(settings) or "(no grid)"
        try:
            config = load_config(overrides=overrides)
        except ValueError as exc:
            raise ValueError(f"cell {index} ({where}): {exc}") from None
        cid = cell_id(config, benchmarks, cell_label)
        if cid in seen:
            raise ValueError(f"cells {seen[cid]} and {index} ({where}) measure the same thing")
        seen[cid] = index
        cells.append(Cell(index, settings, config, benchmarks, cell_label, cid))
    return Sweep(name=name.strip(), path=path, cells=cells, log_file=log_file)
