//! `bridge serve`: the REST API, the job runner, the events poller and the GitOps watcher.
//! Jobs and their history live in an embedded SQLite database under `.bridge/`.
