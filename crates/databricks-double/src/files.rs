//! Files API (`/api/2.0/fs/files`, `/api/2.0/fs/directories`) over a temp dir owned by the double.
//! Uploads stream to a scratch file and are renamed into place; downloads stream from disk (with Range).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::{ApiError, json_response};
use crate::server::{Input, Shared, empty, lock};

pub(crate) const FILES_PREFIX: &str = "/api/2.0/fs/files";
pub(crate) const DIRS_PREFIX: &str = "/api/2.0/fs/directories";
const MAX_PAGE: usize = 1000;

/// A validated `/Volumes/...` path: its segments after `Volumes`.
#[derive(Debug, Clone)]
pub(crate) struct VolumePath {
    pub segments: Vec<String>,
}

impl VolumePath {
    pub fn display(&self) -> String {
        format!("/Volumes/{}", self.segments.join("/"))
    }
    pub fn volume(&self) -> String {
        format!("/Volumes/{}", self.segments[..3].join("/"))
    }
    pub fn local(&self, root: &Path) -> PathBuf {
        let mut p = root.join("Volumes");
        for s in &self.segments {
            p.push(s);
        }
        p
    }
}

/// Decodes and validates a Files API path. `min_segments` after `Volumes` is 3 for directories, 4 for files.
pub(crate) fn parse_path(
    raw: &str,
    min_segments: usize,
    allow_trailing_slash: bool,
) -> Result<VolumePath, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::invalid("The path is not valid UTF-8 after percent-decoding."))?;
    let mut p: &str = &decoded;
    if !p.starts_with("/Volumes/") {
        return Err(ApiError::invalid(format!(
            "Invalid path {p:?}: paths must be absolute and start with /Volumes/<catalog>/<schema>/<volume>/."
        )));
    }
    if allow_trailing_slash && p.len() > 1 && p.ends_with('/') {
        p = &p[..p.len() - 1];
    }
    let segments: Vec<&str> = p["/Volumes/".len()..].split('/').collect();
    for s in &segments {
        if s.is_empty() {
            return Err(ApiError::invalid(format!(
                "Invalid path {p:?}: empty path segment (//) or trailing slash."
            )));
        }
        if *s == "." || *s == ".." {
            return Err(ApiError::invalid(format!(
                "Invalid path {p:?}: '.' and '..' segments are not allowed."
            )));
        }
        if s.contains('\0') {
            return Err(ApiError::invalid(format!(
                "Invalid path {p:?}: NUL character."
            )));
        }
    }
    if segments.len() < min_segments {
        return Err(ApiError::invalid(format!(
            "Invalid path {p:?}: expected /Volumes/<catalog>/<schema>/<volume>{}.",
            if min_segments > 3 { "/<file>" } else { "" }
        )));
    }
    Ok(VolumePath {
        segments: segments.into_iter().map(str::to_string).collect(),
    })
}

fn check_volume(shared: &Shared, p: &VolumePath) -> Result<(), ApiError> {
    if lock(&shared.volumes).contains(&p.volume()) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "The volume {} does not exist.",
            p.volume()
        )))
    }
}

fn query_params(query: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    for (k, _) in &params {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!(
                "Unknown query parameter '{k}' (allowed: {}).",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
    }
    Ok(params)
}

fn http_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn millis(t: SystemTime) -> i64 {
    chrono::DateTime::<chrono::Utc>::from(t).timestamp_millis()
}

/// `/api/2.0/fs/files{path}`: upload, download, metadata, delete.
pub(crate) async fn file(
    shared: &Arc<Shared>,
    method: &Method,
    raw: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    input: Input,
) -> Result<Response, ApiError> {
    if *method == Method::PUT {
        let Input::Stream(mut stream) = input else {
            return Err(ApiError::internal("upload body was not streamed"));
        };
        match check_upload(shared, raw, query, headers) {
            Ok((vp, overwrite)) => {
                let local = vp.local(shared.root.path());
                return upload(shared, &vp, &local, overwrite, stream).await;
            }
            Err(e) => {
                // Read the body anyway so the client sees the error, not a reset connection.
                while let Some(Ok(_)) = stream.next().await {}
                return Err(e);
            }
        }
    }
    query_params(query, &[])?;
    let vp = parse_path(raw, 4, false)?;
    check_volume(shared, &vp)?;
    let local = vp.local(shared.root.path());
    match *method {
        Method::GET | Method::HEAD => {
            let meta = match tokio::fs::metadata(&local).await {
                Ok(m) if m.is_file() => m,
                _ => {
                    return Err(ApiError::not_found(format!(
                        "The file {} does not exist.",
                        vp.display()
                    )));
                }
            };
            let size = meta.len();
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let mut builder = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::LAST_MODIFIED, http_date(modified))
                .header(header::ACCEPT_RANGES, "bytes");
            if *method == Method::HEAD {
                return builder
                    .status(StatusCode::OK)
                    .header(header::CONTENT_LENGTH, size)
                    .body(Body::empty())
                    .map_err(|e| ApiError::internal(e.to_string()));
            }
            let range = match headers.get(header::RANGE) {
                None => None,
                Some(v) => match parse_range(v.to_str().unwrap_or(""), size) {
                    Ok(r) => Some(r),
                    Err(()) => {
                        let mut resp = json_response(
                            StatusCode::RANGE_NOT_SATISFIABLE,
                            &json!({"error_code": "INVALID_PARAMETER_VALUE", "message": format!("Range {:?} cannot be satisfied for a file of {size} bytes.", v)}),
                        );
                        if let Ok(h) = HeaderValue::from_str(&format!("bytes */{size}")) {
                            resp.headers_mut().insert(header::CONTENT_RANGE, h);
                        }
                        return Ok(resp);
                    }
                },
            };
            let mut f = tokio::fs::File::open(&local).await?;
            let (start, len) = match range {
                Some((a, b)) => {
                    builder = builder
                        .status(StatusCode::PARTIAL_CONTENT)
                        .header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{size}"));
                    (a, b - a + 1)
                }
                None => {
                    builder = builder.status(StatusCode::OK);
                    (0, size)
                }
            };
            if start > 0 {
                f.seek(std::io::SeekFrom::Start(start)).await?;
            }
            let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), 256 * 1024);
            builder
                .header(header::CONTENT_LENGTH, len)
                .body(Body::from_stream(stream))
                .map_err(|e| ApiError::internal(e.to_string()))
        }
        Method::DELETE => {
            let _g = lock(&shared.fs_lock);
            match std::fs::metadata(&local) {
                Ok(m) if m.is_file() => {
                    std::fs::remove_file(&local)?;
                    Ok(empty(StatusCode::NO_CONTENT))
                }
                _ => Err(ApiError::not_found(format!(
                    "The file {} does not exist.",
                    vp.display()
                ))),
            }
        }
        _ => Err(ApiError::internal("unrouted method")),
    }
}

/// Validates an upload request before its body is read: path, volume, `overwrite`, Content-Type.
fn check_upload(
    shared: &Shared,
    raw: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(VolumePath, bool), ApiError> {
    let params = query_params(query, &["overwrite"])?;
    let vp = parse_path(raw, 4, false)?;
    check_volume(shared, &vp)?;
    // Documented: "If true or unspecified, an existing file will be overwritten."
    let overwrite = match params
        .iter()
        .find(|(k, _)| k == "overwrite")
        .map(|(_, v)| v.as_str())
    {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid overwrite value '{other}': expected true or false."
            )));
        }
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/octet-stream")
    {
        return Err(ApiError::invalid(format!(
            "Content-Type must be application/octet-stream for file uploads (got {ct:?})."
        )));
    }
    Ok((vp, overwrite))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive (start, end).
fn parse_range(v: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = v.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.checked_sub(1).ok_or(())?
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || end < start {
        return Err(());
    }
    Ok((start, end))
}

/// Fails when an ancestor of `local` (below the volume) is a file.
fn check_parents_are_dirs(shared: &Shared, vp: &VolumePath) -> Result<(), ApiError> {
    for n in 4..vp.segments.len() {
        let anc = VolumePath {
            segments: vp.segments[..n].to_vec(),
        };
        if anc.local(shared.root.path()).is_file() {
            return Err(ApiError::already_exists(format!(
                "{} is a file, not a directory.",
                anc.display()
            )));
        }
    }
    Ok(())
}

async fn upload(
    shared: &Arc<Shared>,
    vp: &VolumePath,
    local: &Path,
    overwrite: bool,
    mut stream: futures::stream::BoxStream<'static, Result<axum::body::Bytes, axum::Error>>,
) -> Result<Response, ApiError> {
    let exists_conflict = |shared: &Shared| -> Result<(), ApiError> {
        if local.is_dir() {
            return Err(ApiError::already_exists(format!(
                "{} is a directory.",
                vp.display()
            )));
        }
        if !overwrite && local.exists() {
            return Err(ApiError::already_exists(format!(
                "The file {} already exists and overwrite is false.",
                vp.display()
            )));
        }
        check_parents_are_dirs(shared, vp)
    };
    if let Err(e) = exists_conflict(shared) {
        while let Some(Ok(_)) = stream.next().await {}
        return Err(e);
    }
    let scratch_dir = shared.root.path().join(".uploads");
    tokio::fs::create_dir_all(&scratch_dir).await?;
    let scratch = scratch_dir.join(uuid::Uuid::new_v4().simple().to_string());
    let result: Result<(), ApiError> = async {
        let f = tokio::fs::File::create(&scratch).await?;
        let mut w = tokio::io::BufWriter::with_capacity(1024 * 1024, f);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::invalid(format!("upload body could not be read: {e}")))?;
            w.write_all(&chunk).await?;
        }
        w.flush().await?;
        w.into_inner().sync_all().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&scratch).await;
        return Err(e);
    }
    let _g = lock(&shared.fs_lock);
    let placed = exists_conflict(shared).and_then(|()| {
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(&scratch, local)?;
        Ok(())
    });
    if placed.is_err() {
        let _ = std::fs::remove_file(&scratch);
    }
    placed.map(|()| empty(StatusCode::NO_CONTENT))
}

/// `/api/2.0/fs/directories{path}`: create, exists, list, delete (empty only).
pub(crate) async fn directory(
    shared: &Arc<Shared>,
    method: &Method,
    raw: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let allowed: &[&str] = if method == Method::GET {
        &["page_size", "page_token"]
    } else {
        &[]
    };
    let params = query_params(query, allowed)?;
    let vp = parse_path(raw, 3, true)?;
    check_volume(shared, &vp)?;
    let local = vp.local(shared.root.path());
    match *method {
        Method::PUT => {
            let _g = lock(&shared.fs_lock);
            check_parents_are_dirs(shared, &vp)?;
            if local.is_file() {
                return Err(ApiError::already_exists(format!(
                    "{} is a file.",
                    vp.display()
                )));
            }
            std::fs::create_dir_all(&local)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Method::HEAD => {
            if local.is_dir() {
                Ok(empty(StatusCode::OK))
            } else {
                Err(
                    ApiError::not_found(format!("The directory {} does not exist.", vp.display()))
                        .without_body(),
                )
            }
        }
        Method::DELETE => {
            let _g = lock(&shared.fs_lock);
            if vp.segments.len() == 3 {
                return Err(ApiError::invalid(
                    "The root directory of a volume cannot be deleted.",
                ));
            }
            if !local.is_dir() {
                return Err(ApiError::not_found(format!(
                    "The directory {} does not exist.",
                    vp.display()
                )));
            }
            if std::fs::read_dir(&local)?.next().is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "DIRECTORY_NOT_EMPTY",
                    format!(
                        "The directory {} is not empty; delete its contents first.",
                        vp.display()
                    ),
                ));
            }
            std::fs::remove_dir(&local)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Method::GET => list(&vp, &local, &params).map(|v| json_response(StatusCode::OK, &v)),
        _ => Err(ApiError::internal("unrouted method")),
    }
}

fn list(
    vp: &VolumePath,
    local: &Path,
    params: &[(String, String)],
) -> Result<serde_json::Value, ApiError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let page_size = match get("page_size") {
        None => MAX_PAGE,
        Some(s) => match s.parse::<i64>() {
            Ok(0) => MAX_PAGE,
            Ok(n) if n > 0 => (n as usize).min(MAX_PAGE),
            _ => {
                return Err(ApiError::invalid(format!(
                    "Invalid page_size '{s}': expected a positive integer."
                )));
            }
        },
    };
    let after: Option<String> = match get("page_token") {
        None | Some("") => None,
        Some(t) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::invalid("Invalid page_token."))?;
            let (dir, name) = raw
                .split_once('\n')
                .ok_or_else(|| ApiError::invalid("Invalid page_token."))?;
            if dir != vp.display() {
                return Err(ApiError::invalid(
                    "page_token was issued for another directory.",
                ));
            }
            Some(name.to_string())
        }
    };
    if !local.is_dir() {
        return Err(ApiError::not_found(format!(
            "The directory {} does not exist.",
            vp.display()
        )));
    }
    let mut entries: Vec<(String, std::fs::Metadata)> = Vec::new();
    for e in std::fs::read_dir(local)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        entries.push((name, e.metadata()?));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let remaining: Vec<_> = entries
        .into_iter()
        .filter(|(n, _)| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let more = remaining.len() > page_size;
    let page = &remaining[..remaining.len().min(page_size)];
    let contents: Vec<serde_json::Value> = page
        .iter()
        .map(|(name, m)| {
            let path = format!("{}/{}", vp.display(), name);
            if m.is_dir() {
                json!({"path": format!("{path}/"), "is_directory": true, "name": name})
            } else {
                json!({
                    "path": path,
                    "is_directory": false,
                    "file_size": m.len(),
                    "last_modified": millis(m.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
                    "name": name,
                })
            }
        })
        .collect();
    let mut out = json!({ "contents": contents });
    if more && let Some((last, _)) = page.last() {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}\n{}",
            vp.display(),
            last
        ));
        out["next_page_token"] = json!(token);
    }
    Ok(out)
}

/// Every file below `prefix` (a `/Volumes/...` path prefix), sorted.
pub(crate) fn list_all(root: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let base = root.join("Volumes");
    let mut stack = vec![(base, "/Volumes".to_string())];
    while let Some((dir, display)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let d = format!("{display}/{name}");
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((e.path(), d)),
                Ok(_) if d.starts_with(prefix) => out.push(d),
                _ => {}
            }
        }
    }
    out.sort();
    out
}
