#!/usr/bin/env python3
"""Hugging Face UCLA-AGI/SPIN_iter* parquet files -> the JSON lines `spin` reads.

uclaml/SPIN's data (reformat.py, convert_data.py, and the SPIN_iter0..3 datasets on the Hub) are
parquet files with two columns, `real` and `generated`, each list<struct<role: string, content:
string>> (spin-reference.md section 2.4; fields are read by name, other columns are ignored). Each
row becomes one line {"real": [...], "generated": [...]} with {"role", "content"} messages, the
schema of `spin reformat` / `spin generate` / `spin convert`.

  spin_parquet_to_jsonl.py FILE.parquet... --output OUT.jsonl     all inputs, in order, into one file
  spin_parquet_to_jsonl.py FILE.parquet... --output-dir DIR       DIR/<name>.jsonl per input, so
      train_prefs-00000-of-00001.parquet becomes train_prefs-00000-of-00001.jsonl (a directory
      `spin train` and `spin generate --input` read)

Outputs are written to PATH.tmp, fsync'ed and renamed; an existing output is an error unless
--overwrite. Bad input (a missing column, a wrong type, a row whose list has fewer than two
messages or a message without string role/content) is an error naming the file, row and key.
Needs pyarrow (pip install pyarrow).
"""
import argparse
import json
import os
import sys

COLUMNS = ("real", "generated")


class BadInput(Exception):
    pass


def check_schema(path, schema):
    import pyarrow as pa

    for col in COLUMNS:
        idx = schema.get_field_index(col)
        if idx < 0:
            raise BadInput(f"{path}: missing column {col!r} (columns: {', '.join(schema.names)})")
        t = schema.field(idx).type
        ok = (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type)
        if ok:
            names = {t.value_type.field(i).name for i in range(t.value_type.num_fields)}
            ok = {"role", "content"} <= names
        if not ok:
            raise BadInput(f"{path}: column {col!r} has type {t}, expected list<struct<role: string, content: string>>")


def messages(path, row, col, value):
    if value is None or len(value) < 2:
        raise BadInput(f"{path}: row {row}: {col!r} must be a list of at least 2 messages")
    out = []
    for i, m in enumerate(value):
        role, content = (m or {}).get("role"), (m or {}).get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise BadInput(f"{path}: row {row}: {col}[{i}] must have string 'role' and 'content'")
        out.append({"role": role, "content": content})
    return out


def rows(path):
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's ArrowInvalid and friends
        raise BadInput(f"{path}: not a readable parquet file ({e})")
    check_schema(path, f.schema_arrow)
    n = 0
    for batch in f.iter_batches(columns=list(COLUMNS), batch_size=4096):
        for rec in batch.to_pylist():
            yield {c: messages(path, n, c, rec[c]) for c in COLUMNS}
            n += 1


class AtomicOut:
    """PATH.tmp, fsync, then rename (overwrite) or link (fails if PATH appeared)."""

    def __init__(self, path, overwrite):
        if os.path.exists(path) and not overwrite:
            raise BadInput(f"{path} exists (--overwrite replaces it)")
        self.path, self.overwrite, self.tmp = path, overwrite, path + ".tmp"
        self.f = open(self.tmp, "w", encoding="utf-8")
        self.n = 0
        self.empty = 0

    def write(self, row):
        self.f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.n += 1
        self.empty += not row["generated"][1]["content"].strip()

    def commit(self):
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        if self.overwrite:
            os.replace(self.tmp, self.path)
        else:
            os.link(self.tmp, self.path)
            os.unlink(self.tmp)

    def abort(self):
        self.f.close()
        os.unlink(self.tmp)


def convert(inputs, output, overwrite):
    out = AtomicOut(output, overwrite)
    try:
        for p in inputs:
            for r in rows(p):
                out.write(r)
    except BaseException:
        out.abort()
        raise
    out.commit()
    note = f" ({out.empty} with an empty generated answer: `spin train` refuses those)" if out.empty else ""
    print(f"spin_parquet_to_jsonl: {out.n} rows from {', '.join(inputs)} -> {output}{note}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="parquet files with columns real and generated")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--output", help="one JSONL file for all inputs")
    g.add_argument("--output-dir", help="DIR/<input name>.jsonl per input")
    ap.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: an error)")
    a = ap.parse_args(argv)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print("spin_parquet_to_jsonl: needs pyarrow (pip install pyarrow)", file=sys.stderr)
        return 1
    try:
        for p in a.inputs:
            if not os.path.isfile(p):
                raise BadInput(f"{p}: no such file")
        if a.output:
            convert(a.inputs, a.output, a.overwrite)
        else:
            os.makedirs(a.output_dir, exist_ok=True)
            for p in a.inputs:
                stem = os.path.basename(p)
                stem = stem[: -len(".parquet")] if stem.endswith(".parquet") else stem
                convert([p], os.path.join(a.output_dir, stem + ".jsonl"), a.overwrite)
    except BadInput as e:
        print(f"spin_parquet_to_jsonl: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"spin_parquet_to_jsonl: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # pyarrow's errors on a file that is not parquet
        print(f"spin_parquet_to_jsonl: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
