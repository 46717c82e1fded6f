"""Checks of a COCO-layout dataset that find every problem at once, with counts and examples.

The one owner of what a valid dataset is: :func:`check_annotations` (the JSON: structure, ids,
references, boxes) and :func:`check_images` (files exist, headers readable, sizes agree with the
JSON, no decompression bombs). ``load_coco`` raises the errors they find (:func:`error_message`);
``study data check ROOT`` prints every problem, warnings included (:func:`run_data_check`).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from study.errors import DataError

MAX_EXAMPLES = 5  # example ids kept per problem kind
IMAGE_TOO_LARGE = (Image.DecompressionBombError, Image.DecompressionBombWarning)
IMAGE_READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)

ERROR, WARNING = "error", "warning"
# kind: (severity, what is wrong with "{one|several}" forms, label before the examples).
# Listed in report order; annotation boxes are checked only once their entry is valid.
KINDS: dict[str, tuple[str, str, str]] = {
    "category_not_object": (ERROR, "{category is|categories are} not {an object|objects}", ""),
    "category_bad_id": (ERROR, "categor{y|ies} without an integer 'id'", ""),
    "category_duplicate_id": (ERROR, "duplicate category {id|ids}", ""),
    "category_bad_name": (ERROR, "categor{y|ies} without a string 'name'", "id"),
    "image_not_object": (ERROR, "image {entry is|entries are} not {an object|objects}", ""),
    "image_bad_id": (ERROR, "image{|s} without an integer 'id'", ""),
    "image_duplicate_id": (ERROR, "duplicate image {id|ids}", "id"),
    "image_bad_file_name": (ERROR, "image{|s} without a string 'file_name'", "id"),
    "image_outside_folder": (
        ERROR,
        "image{|s} whose 'file_name' is absolute or leaves the image folder",
        "id",
    ),
    "image_duplicate_file_name": (ERROR, "duplicate {file_name|file_names}", ""),
    "image_bad_size": (ERROR, "image{|s} without a positive integer 'width'/'height'", "id"),
    "ann_not_object": (ERROR, "{annotation is|annotations are} not {an object|objects}", ""),
    "ann_bad_id": (ERROR, "annotation{|s} without an integer 'id'", ""),
    "ann_duplicate_id": (ERROR, "duplicate annotation {id|ids}", "id"),
    "ann_unknown_image": (ERROR, "annotation{|s} whose 'image_id' is not in 'images'", "id"),
    "ann_unknown_category": (
        ERROR,
        "annotation{|s} whose 'category_id' is not in 'categories'",
        "id",
    ),
    "ann_bad_bbox": (ERROR, "annotation{|s} without a 'bbox' of 4 finite numbers", "id"),
    "ann_bad_area": (ERROR, "annotation{|s} without a finite number 'area'", "id"),
    "ann_bad_iscrowd": (ERROR, "annotation{|s} whose 'iscrowd' is not 0 or 1", "id"),
    "image_missing": (ERROR, "image {file|files} not found", ""),
    "image_unreadable": (ERROR, "image {file|files} PIL cannot open", ""),
    "image_too_large": (ERROR, "image{|s} over PIL's decompression-bomb limit", ""),
    "image_size_mismatch": (
        ERROR,
        "image{|s} whose file size differs from the JSON's width/height",
        "",
    ),
    "box_degenerate": (
        WARNING,
        "box{|es} with non-positive width/height (dropped when loading; a split to be scored "
        "is refused by train and evaluate unless eval.dropped_gt is score or ignore)",
        "annotation id",
    ),
    "box_outside": (
        WARNING,
        "box{|es} entirely outside {its|their} image (dropped when loading; a split to be "
        "scored is refused by train and evaluate unless eval.dropped_gt is score or ignore)",
        "annotation id",
    ),
    "box_clipped": (
        WARNING,
        "box{|es} partly outside {its|their} image (clipped when loading)",
        "annotation id",
    ),
}
_FORMS = re.compile(r"\{([^{}|]*)\|([^{}|]*)\}")


@dataclass
class Problem:
    """One kind of problem in a dataset: how often it occurs and a few examples of it."""

    kind: str
    message: str  # what is wrong, with its count: "3 duplicate image ids"
    count: int = 1
    examples: list[str] = field(default_factory=list)
    severity: str = ERROR
    label: str = ""  # what the examples are: "id" prints "(e.g. ids 3, 4)"

    def describe(self, max_examples: int = MAX_EXAMPLES) -> str:
        """The message and up to ``max_examples`` examples, as one line."""
        if not self.examples:
            return self.message
        shown = self.examples[:max_examples]
        label = f"{self.label}{'s' if len(shown) > 1 else ''} " if self.label else ""
        more = ", ..." if self.count > len(shown) else ""
        return f"{self.message} (e.g. {label}{', '.join(shown)}{more})"


class _Found:
    """Counts and examples per problem kind, in the order of :data:`KINDS`."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, example: object, times: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + times
        shown = self.examples.setdefault(kind, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(str(example))

    def problems(self) -> list[Problem]:
        out = []
        for kind, (severity, text, label) in KINDS.items():
            n = self.counts.get(kind, 0)
            if n:
                what = _FORMS.sub(lambda m, n=n: m.group(1 if n == 1 else 2), text)
                out.append(Problem(kind, f"{n} {what}", n, self.examples[kind], severity, label))
        return out


def errors_in(problems: list[Problem]) -> list[Problem]:
    """The error-severity problems (warnings are reported, never raised)."""
    return [p for p in problems if p.severity == ERROR]


# ---------------------------------------------------------------- the layout and its files


def annotation_file(root: str | os.PathLike[str], split: str) -> Path:
    """The path of a split's annotation file in the COCO layout."""
    return Path(root) / "annotations" / f"instances_{split}.json"


def read_annotation_file(ann_file: Path) -> Any:
    """The parsed JSON of an annotation file; DataError naming it if missing or unreadable."""
    if not ann_file.is_file():
        raise DataError(f"{ann_file}: annotation file not found")
    try:
        with open(ann_file, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{ann_file}: invalid or truncated JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{ann_file}: cannot read ({exc})") from None


def _pixels(exc: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found.group(1)):,} pixels" if found else str(exc)


def too_large_error(path: Path, exc: Exception) -> DataError:
    """DataError for PIL's decompression-bomb guard, naming the file and its pixel count."""
    return DataError(
        f"{path}: image of {_pixels(exc)} is over PIL's decompression-bomb limit "
        f"(Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,}); refusing to decode it"
    )


def clip_boxes(
    xywh: Any, width: float | np.ndarray, height: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn COCO [x, y, w, h] into XYXY clipped to the image (one size, or one per box).

    Returns (xyxy of kept boxes, keep mask, degenerate mask, clipped mask) over the input rows:
    degenerate = non-positive width/height in the file; clipped = changed by clipping; a box
    empty after clipping (outside its image) is neither kept nor degenerate.
    """
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    width = np.asarray(width, dtype=np.float64).reshape(-1, 1)
    height = np.asarray(height, dtype=np.float64).reshape(-1, 1)
    degenerate = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    clipped_xyxy = xyxy.copy()
    clipped_xyxy[:, 0::2] = clipped_xyxy[:, 0::2].clip(0, width)
    clipped_xyxy[:, 1::2] = clipped_xyxy[:, 1::2].clip(0, height)
    clipped = ~degenerate & np.any(clipped_xyxy != xyxy, axis=1)
    nonempty = (clipped_xyxy[:, 2] > clipped_xyxy[:, 0]) & (clipped_xyxy[:, 3] > clipped_xyxy[:, 1])
    keep = ~degenerate & nonempty
    return clipped_xyxy[keep], keep, degenerate, clipped


# ---------------------------------------------------------------- the annotation JSON


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(entry: dict[str, Any], key: str) -> str:
    """A key's value for an example: its repr (cut if very long), or 'missing'."""
    return f"{entry[key]!r:.120}" if key in entry else "missing"


def file_name_problem(name: Any) -> str | None:
    """The problem kind of an image's ``file_name``, or None if it names a file inside the
    image folder (relative, not climbing out with '..')."""
    if not isinstance(name, str):
        return "image_bad_file_name"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(name).drive:
        return "image_outside_folder"
    norm = posixpath.normpath(posix)
    if norm == ".":
        return "image_bad_file_name"
    if norm == ".." or norm.startswith("../"):
        return "image_outside_folder"
    return None


def _check_category_entries(categories: list[Any], found: _Found) -> set[int]:
    cat_ids: set[int] = set()
    for i, c in enumerate(categories):
        if not isinstance(c, dict):
            found.add("category_not_object", f"categories[{i}]")
            continue
        cid = c.get("id")
        if not _is_int(cid):
            found.add("category_bad_id", f"categories[{i}] (id {_shown(c, 'id')})")
            continue
        if cid in cat_ids:
            found.add("category_duplicate_id", cid)
        cat_ids.add(cid)
        if not isinstance(c.get("name"), str):
            found.add("category_bad_name", cid)
    return cat_ids


def _check_image_entries(images: list[Any], found: _Found) -> dict[int, tuple[int, int] | None]:
    """Checks each image entry; returns {image id: (width, height), or None if invalid}."""
    sizes: dict[int, tuple[int, int] | None] = {}
    first_file: dict[int, Any] = {}
    ids_of_file: dict[str, list[Any]] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            found.add("image_not_object", f"images[{i}]")
            continue
        iid, name = img.get("id"), img.get("file_name")
        ref = iid if _is_int(iid) else f"images[{i}]"
        if not _is_int(iid):
            found.add("image_bad_id", f"images[{i}] (id {_shown(img, 'id')})")
        elif iid in first_file:
            found.add("image_duplicate_id", f"{iid} ({first_file[iid]!r:.60}, {name!r:.60})")
        else:
            first_file[iid] = name
        bad_name = file_name_problem(name)
        if bad_name:
            found.add(bad_name, f"{ref} (file_name {_shown(img, 'file_name')})")
        else:
            ids_of_file.setdefault(posixpath.normpath(name.replace("\\", "/")), []).append(ref)
        w, h = img.get("width"), img.get("height")
        size_ok = _is_int(w) and _is_int(h) and w > 0 and h > 0
        if not size_ok:
            shown = f"width {_shown(img, 'width')}, height {_shown(img, 'height')}"
            found.add("image_bad_size", f"{ref} ({shown})")
        if _is_int(iid):
            sizes[iid] = (w, h) if size_ok else None
    for name, refs in ids_of_file.items():
        if len(refs) > 1:
            ids = ", ".join(map(str, refs[:3])) + (", ..." if len(refs) > 3 else "")
            found.add("image_duplicate_file_name", f"{name!r:.60} (ids {ids})", len(refs) - 1)
    return sizes


def _check_annotation_entries(
    anns: list[Any],
    cat_ids: set[int],
    sizes: dict[int, tuple[int, int] | None],
    found: _Found,
) -> None:
    ann_ids: set[int] = set()
    boxes, box_ids, box_sizes = [], [], []  # valid non-crowd boxes on valid images
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict):
            found.add("ann_not_object", f"annotations[{i}]")
            continue
        aid = ann.get("id")
        ref = aid if _is_int(aid) else f"annotations[{i}]"
        if not _is_int(aid):
            found.add("ann_bad_id", f"annotations[{i}] (id {_shown(ann, 'id')})")
        elif aid in ann_ids:
            found.add("ann_duplicate_id", aid)
        else:
            ann_ids.add(aid)
        image_id = ann.get("image_id")
        if not (_is_int(image_id) and image_id in sizes):
            found.add("ann_unknown_image", f"{ref} (image_id {_shown(ann, 'image_id')})")
        cat = ann.get("category_id")
        if not (_is_int(cat) and cat in cat_ids):
            found.add("ann_unknown_category", f"{ref} (category_id {_shown(ann, 'category_id')})")
        bbox = ann.get("bbox")
        bbox_ok = isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))
        if not bbox_ok:
            found.add("ann_bad_bbox", f"{ref} (bbox {_shown(ann, 'bbox')})")
        area = ann.get("area")
        if not _is_number(area):
            found.add("ann_bad_area", f"{ref} (area {_shown(ann, 'area')})")
        crowd = ann.get("iscrowd")
        if not (_is_int(crowd) and crowd in (0, 1)):
            found.add("ann_bad_iscrowd", f"{ref} (iscrowd {_shown(ann, 'iscrowd')})")
        elif bbox_ok and crowd == 0 and _is_int(image_id) and sizes.get(image_id):
            boxes.append(bbox)
            box_ids.append(ref)
            box_sizes.append(sizes[image_id])
    if boxes:
        wh = np.asarray(box_sizes, dtype=np.float64)
        _, keep, degenerate, clipped = clip_boxes(boxes, wh[:, 0], wh[:, 1])
        for kind, mask in (
            ("box_degenerate", degenerate),
            ("box_outside", ~keep & ~degenerate),
            ("box_clipped", clipped & keep),
        ):
            for j in np.flatnonzero(mask):
                found.add(kind, box_ids[j])


def check_annotations(d: Any) -> list[Problem]:
    """Every problem of a COCO annotation dict (errors and warnings), without reading images."""
    if not isinstance(d, dict):
        return [Problem("not_an_object", "expected a JSON object at the top level")]
    structure = []
    for key in ("images", "annotations", "categories"):
        if key not in d:
            need = "a COCO file needs images, annotations and categories"
            structure.append(Problem("missing_key", f"missing key {key!r} ({need})"))
        elif not isinstance(d[key], list):
            got = type(d[key]).__name__
            structure.append(Problem("not_a_list", f"{key!r} must be a list, not {got}"))
    if structure:
        return structure
    found = _Found()
    cat_ids = _check_category_entries(d["categories"], found)
    sizes = _check_image_entries(d["images"], found)
    _check_annotation_entries(d["annotations"], cat_ids, sizes, found)
    problems = found.problems()
    if not d["categories"]:
        problems.insert(0, Problem("no_categories", "'categories' is empty"))
    return problems


def dataset_root(ann_file: Path) -> Path:
    """The dataset folder of ``root/annotations/instances_<split>.json``."""
    return ann_file.parent.parent if ann_file.parent.name == "annotations" else ann_file.parent


def error_message(ann_file: Path, problems: list[Problem], max_examples: int = 3) -> str:
    """One paragraph naming the file and each problem with its count and examples."""
    parts = [p.describe(max_examples) for p in problems]
    head = f"{ann_file}: " if len(parts) == 1 else f"{ann_file}: {len(parts)} problems: "
    return (
        f"{head}{'; '.join(parts)}. Run `study data check {dataset_root(ann_file)}` for the "
        "full list."
    )


# ---------------------------------------------------------------- image files


def check_images(d: Any, img_dir: Path, decode: bool = False) -> list[Problem]:
    """Problems of the image files of a COCO dict: missing, unreadable, over the
    decompression-bomb limit, or of another size than the JSON says. Reads headers only unless
    ``decode``, so by default a file truncated after its header passes here (and fails when
    loaded, naming the file); ``decode`` reads every pixel and reports it as unreadable."""
    if not isinstance(d, dict) or not isinstance(d.get("images"), list):
        return []
    img_dir = Path(img_dir)
    if not img_dir.is_dir():
        return [Problem("image_dir_missing", f"image folder {img_dir} not found")]
    found = _Found()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for img in d["images"]:
            name = img.get("file_name") if isinstance(img, dict) else None
            if file_name_problem(name):
                continue  # reported by check_annotations
            try:
                with Image.open(img_dir / name) as im:
                    size = im.size
                    if decode:
                        im.load()
            except FileNotFoundError:
                found.add("image_missing", name)
            except IMAGE_TOO_LARGE as exc:
                found.add("image_too_large", f"{name} ({_pixels(exc)})")
            except IMAGE_READ_ERRORS as exc:
                found.add("image_unreadable", f"{name} ({type(exc).__name__})")
            else:
                w, h = img.get("width"), img.get("height")
                if _is_int(w) and _is_int(h) and (w, h) != size:
                    found.add(
                        "image_size_mismatch", f"{name} (JSON {w}x{h}, file {size[0]}x{size[1]})"
                    )
    return found.problems()


# ---------------------------------------------------------------- a dataset folder


@dataclass
class SplitReport:
    """The counts and problems of one split."""

    split: str
    ann_file: Path
    counts: dict[str, int]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not errors_in(self.problems)


@dataclass
class DataReport:
    """The result of :func:`check_dataset`: ``ok`` is False if any split has an error."""

    root: Path
    splits: list[SplitReport]
    images_checked: bool

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.splits)


def _counts(d: Any) -> dict[str, int]:
    if not isinstance(d, dict):
        return {}
    counts = {
        k: len(d[k]) for k in ("images", "annotations", "categories") if isinstance(d.get(k), list)
    }
    if isinstance(d.get("annotations"), list):
        counts["crowd"] = sum(
            1 for a in d["annotations"] if isinstance(a, dict) and a.get("iscrowd") == 1
        )
    return counts


def _check_split(root: Path, ann_file: Path, images: bool, decode: bool) -> SplitReport:
    split = ann_file.stem.removeprefix("instances_")
    try:
        d = read_annotation_file(ann_file)
    except DataError as exc:
        text = str(exc).removeprefix(f"{ann_file}: ")
        return SplitReport(split, ann_file, {}, [Problem("unreadable_file", text)])
    problems = check_annotations(d)
    if images:
        problems += check_images(d, root / split, decode)
    counts = _counts(d)
    if counts.get("images", 1) == 0:
        problems.insert(0, Problem("no_images", "'images' is empty: the split has no images"))
    elif counts.get("images") and not counts.get("annotations", 1) - counts.get("crowd", 0):
        problems.insert(
            0,
            Problem(
                "no_annotations",
                f"none of the {counts['images']:,} images has an annotation (a non-crowd box): "
                "nothing to train on or to score",
            ),
        )
    problems.sort(key=lambda p: p.severity != ERROR)  # errors first, stable otherwise
    return SplitReport(split, ann_file, counts, problems)


def check_dataset(
    root: str | os.PathLike[str],
    split: str | None = None,
    images: bool = True,
    decode: bool = False,
) -> DataReport:
    """Check every split of ``root/annotations/instances_*.json`` (or only ``split``) and,
    with ``images``, the headers of its image files in ``root/<split>/`` (with ``decode``,
    every pixel)."""
    root = Path(root)
    if split is not None:
        files = [annotation_file(root, split)]
        if not files[0].is_file():
            have = sorted(f.stem.removeprefix("instances_") for f in _ann_files(root))
            raise DataError(
                f"{files[0]}: annotation file not found (splits in {root}: "
                f"{', '.join(have) or 'none'})"
            )
    else:
        files = _ann_files(root)
        if not files:
            raise DataError(
                f"{root}: no annotation files (expected {root / 'annotations'}/"
                "instances_<split>.json)"
            )
    return DataReport(root, [_check_split(root, f, images, decode) for f in files], images)


def _ann_files(root: Path) -> list[Path]:
    return sorted((root / "annotations").glob("instances_*.json"))


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def format_report(report: DataReport) -> str:
    """The report as text: per split its counts, then each problem with count and examples."""
    what = "annotations and image headers" if report.images_checked else "annotations only"
    lines = [f"Data check of {report.root} ({what})"]
    for s in report.splits:
        lines.append(f"{s.split}: {s.ann_file}")
        c = s.counts
        if c:
            lines.append(
                f"  {_plural(c.get('images', 0), 'image')}, "
                f"{_plural(c.get('annotations', 0), 'annotation')} "
                f"({c.get('crowd', 0):,} crowd), "
                f"{_plural(c.get('categories', 0), 'category', 'categories')}"
            )
        for p in s.problems:
            lines.append(f"  {p.severity:<7}  {p.describe()}")
        n_err = len(errors_in(s.problems))
        kinds = f"{_plural(n_err, 'kind')} of error, {_plural(len(s.problems) - n_err, 'kind')}"
        verdict = "OK" if s.ok else "FAILED"
        lines.append(f"  {verdict}: {kinds} of warning" if s.problems else "  OK: no problems")
    bad = [s.split for s in report.splits if not s.ok]
    if bad:
        lines.append(
            f"Errors in {len(bad)} of {len(report.splits)} splits ({', '.join(bad)}): training "
            "and evaluation refuse these files until they are fixed."
        )
    else:
        lines.append(f"No errors in {_plural(len(report.splits), 'split')}.")
    return "\n".join(lines)


def run_data_check(
    root: str | os.PathLike[str],
    split: str | None = None,
    images: bool = True,
    decode: bool = False,
) -> tuple[str, bool]:
    """``study data check``: (report text, ok); exit with 2 when not ok. ``decode`` reads every
    pixel of every image (``--decode``)."""
    report = check_dataset(root, split, images, decode)
    return format_report(report), report.ok
