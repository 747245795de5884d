"""``[storage]`` files in tests: what the unreleased draft of schema version 1 created."""

from __future__ import annotations

__all__ = ["DRAFT_ROW", "DRAFT_SCHEMA"]

#: What the first draft of schema version 1 (commit d89175d, never released) created.
DRAFT_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE results (
    model TEXT NOT NULL, provider TEXT NOT NULL, checked_at REAL NOT NULL,
    status TEXT NOT NULL, reported TEXT NOT NULL, adapter TEXT NOT NULL,
    latency_ms REAL, failure TEXT, error TEXT, http_status INTEGER
);
CREATE INDEX results_adapter_time ON results (model, provider, checked_at);
CREATE INDEX results_time ON results (checked_at);
CREATE TABLE transitions (
    model TEXT NOT NULL, provider TEXT NOT NULL, at REAL NOT NULL,
    previous TEXT, current TEXT NOT NULL, failure TEXT, error TEXT
);
CREATE INDEX transitions_adapter_time ON transitions (model, provider, at);
CREATE INDEX transitions_time ON transitions (at);
CREATE TABLE rollups_minute (
    model TEXT NOT NULL, provider TEXT NOT NULL, start REAL NOT NULL,
    healthy INTEGER NOT NULL, degraded INTEGER NOT NULL, down INTEGER NOT NULL,
    other INTEGER NOT NULL, up_seconds REAL NOT NULL, covered_seconds REAL NOT NULL,
    PRIMARY KEY (model, provider, start)
) WITHOUT ROWID;
CREATE INDEX rollups_minute_time ON rollups_minute (start);
CREATE TABLE rollups_hour (
    model TEXT NOT NULL, provider TEXT NOT NULL, start REAL NOT NULL,
    healthy INTEGER NOT NULL, degraded INTEGER NOT NULL, down INTEGER NOT NULL,
    other INTEGER NOT NULL, up_seconds REAL NOT NULL, covered_seconds REAL NOT NULL,
    PRIMARY KEY (model, provider, start)
) WITHOUT ROWID;
CREATE INDEX rollups_hour_time ON rollups_hour (start);
"""
#: One result as the draft stored it.
DRAFT_ROW = (
    "INSERT INTO results VALUES ('gpt-4', 'openai', 1700006400.0, 'healthy', 'healthy', "
    "'openai', 120.0, NULL, NULL, 200)"
)

