"""The jobs of a server kept in SQLite under its runs folder, so that a restart shows every past run.

One row per job (its config, owner, status, progress and result), its curves in two tables (a row per
logged step, a row per finished epoch, with the GAN's sample grid as a .npy blob), and the limits the
teacher set. Only the server process writes it; WAL lets a reader (a load test, a second look) read it
while it trains.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

FILE = "jobs.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, kind TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL, device TEXT NOT NULL DEFAULT '',
    phase TEXT NOT NULL DEFAULT '', progress REAL NOT NULL DEFAULT 0, samples_per_s REAL NOT NULL DEFAULT 0,
    eta_s REAL, last_step TEXT, error TEXT, result TEXT
);
CREATE TABLE IF NOT EXISTS steps (job_id INTEGER NOT NULL, epoch INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS epochs (job_id INTEGER NOT NULL, epoch INTEGER NOT NULL, data TEXT NOT NULL, grid BLOB);
CREATE INDEX IF NOT EXISTS steps_of_job ON steps (job_id);
CREATE INDEX IF NOT EXISTS epochs_of_job ON epochs (job_id);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# The job fields kept as JSON text; the rest are plain columns.
JSON_FIELDS = ("config", "last_step", "result")
COLUMNS = ("name", "owner", "kind", "config", "status", "created", "started", "finished", "device", "phase",
           "progress", "samples_per_s", "eta_s", "last_step", "error", "result")


def _to_blob(grid: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, grid, allow_pickle=False)
    return buffer.getvalue()


def _from_blob(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


class JobStore:
    """``path`` None keeps the jobs in memory only (a runs folder that cannot be written)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:" if path is None else path, check_same_thread=False,
                                   isolation_level=None)  # autocommit; each write is one statement or one batch
        if path is not None:
            # WAL with NORMAL: a commit costs no fsync, and a crash loses at most the last few points.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- jobs -------------------------------------------------------------------------------

    def insert(self, fields: dict) -> int:
        """A new job; returns its id, unique in the file (another server on the same folder included)."""
        row = self._encode(fields)
        with self._lock:
            cursor = self._db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                      tuple(row.values()))
        return cursor.lastrowid

    def update(self, job_id: int, **fields) -> None:
        row = self._encode(fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
                             (*row.values(), job_id))

    def add_step(self, job_id: int, point: dict, **fields) -> None:
        """One logged point of a job's curves, with the job's progress fields, in one transaction."""
        row = self._encode(fields)
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO steps VALUES (?, ?, ?)", (job_id, point["epoch"], json.dumps(point)))
            if row:
                self._db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
                                 (*row.values(), job_id))

    def add_epoch(self, job_id: int, record: dict) -> None:
        grid = record.get("grid")
        rest = {k: v for k, v in record.items() if k != "grid"}
        with self._lock:
            self._db.execute("INSERT INTO epochs VALUES (?, ?, ?, ?)",
                             (job_id, record["epoch"], json.dumps(rest), None if grid is None else _to_blob(grid)))

    def forget_after(self, job_id: int, epoch: int) -> None:
        """Drop a job's points past ``epoch``: what an interrupted run trains again when it resumes."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM steps WHERE job_id = ? AND epoch > ?", (job_id, epoch))
            self._db.execute("DELETE FROM epochs WHERE job_id = ? AND epoch > ?", (job_id, epoch))

    def load(self) -> list[dict]:
        """Every job, oldest first, each with its ``steps`` and ``epochs``."""
        with self._lock:
            rows = self._db.execute(f"SELECT id, {', '.join(COLUMNS)} FROM jobs ORDER BY id").fetchall()
            steps = self._db.execute("SELECT job_id, data FROM steps ORDER BY rowid").fetchall()
            epochs = self._db.execute("SELECT job_id, data, grid FROM epochs ORDER BY rowid").fetchall()
        jobs = {}
        for job_id, *values in rows:
            job = dict(zip(COLUMNS, values, strict=True))
            for key in JSON_FIELDS:
                job[key] = None if job[key] is None else json.loads(job[key])
            jobs[job_id] = {"id": job_id, **job, "steps": [], "epochs": []}
        for job_id, point in steps:
            jobs[job_id]["steps"].append(json.loads(point))
        for job_id, record, grid in epochs:
            jobs[job_id]["epochs"].append(json.loads(record) | ({} if grid is None else {"grid": _from_blob(grid)}))
        return list(jobs.values())

    # --- settings ---------------------------------------------------------------------------

    def setting(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: dict) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))

    @staticmethod
    def _encode(fields: dict) -> dict:
        row = {}
        for key, value in fields.items():
            if key not in COLUMNS:
                raise KeyError(f"jobs have no column {key!r}")
            if key in JSON_FIELDS and value is not None:
                value = json.dumps(asdict(value) if key == "config" else value)
            row[key] = value
        return row
