//! Unity Catalog volumes through the Files API (`/api/2.0/fs/files`, `/api/2.0/fs/directories`),
//! and [`VolumeStore`], an `object_store` over it so the `volume` sink writes `/Volumes/...` paths.
//!
//! Uploads are streamed: small objects from memory, large ones (multipart writes) spooled to a
//! local file first and then sent from disk, so a retried upload sends the same bytes again.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, UploadPart,
};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LAST_MODIFIED, RANGE};
use serde::Deserialize;

use crate::databricks::client::DatabricksClient;
use crate::databricks::{DatabricksError, Result};

/// Name of this store in `object_store` errors.
const STORE: &str = "DatabricksFiles";

/// Percent-encodes one path segment (everything but unreserved characters).
pub fn encode_segment(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Checks a volume path: absolute, under `/Volumes/catalog/schema/volume`, no `.`/`..`/empty
/// segments.
pub fn check_volume_path(path: &str) -> std::result::Result<(), VolumePathError> {
    let rest = path
        .strip_prefix("/Volumes/")
        .ok_or_else(|| VolumePathError::NotAVolume(path.to_string()))?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if segments.len() < 3 {
        return Err(VolumePathError::NoVolume(path.to_string()));
    }
    if let Some(bad) = segments
        .iter()
        .find(|s| s.is_empty() || **s == "." || **s == "..")
    {
        return Err(VolumePathError::Segment {
            path: path.to_string(),
            segment: bad.to_string(),
        });
    }
    Ok(())
}

/// Why a path is not a usable volume path.
#[derive(Debug, thiserror::Error)]
pub enum VolumePathError {
    /// Not under `/Volumes/`.
    #[error("`{0}` is not a volume path (/Volumes/catalog/schema/volume/...)")]
    NotAVolume(String),
    /// Fewer than catalog, schema and volume.
    #[error("`{0}` names no volume: expected /Volumes/catalog/schema/volume/...")]
    NoVolume(String),
    /// An empty, `.` or `..` segment.
    #[error("`{path}` has an invalid segment `{segment}`")]
    Segment { path: String, segment: String },
    /// Not a valid object path.
    #[error("`{path}`: {source}")]
    Object {
        path: String,
        #[source]
        source: object_store::path::Error,
    },
}

/// `/api/2.0/fs/{kind}/Volumes/...` with every segment encoded.
fn api_path(kind: &str, path: &str) -> String {
    let encoded: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(encode_segment)
        .collect();
    format!("/api/2.0/fs/{kind}/{}", encoded.join("/"))
}

/// What to upload.
#[derive(Debug, Clone)]
pub enum UploadBody {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A local file, streamed from disk (opened again for every attempt).
    File(PathBuf),
}

/// A file's size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Size in bytes.
    pub size: u64,
    /// Last modification, when the answer had it.
    pub last_modified: Option<DateTime<Utc>>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, Deserialize)]
pub struct DirEntry {
    /// Absolute path.
    pub path: String,
    /// Whether it is a directory.
    #[serde(default)]
    pub is_directory: bool,
    /// Size of a file.
    #[serde(default)]
    pub file_size: Option<u64>,
    /// Modification time of a file, in milliseconds since the epoch.
    #[serde(default)]
    pub last_modified: Option<i64>,
}

#[derive(Deserialize)]
struct DirPage {
    #[serde(default)]
    contents: Vec<DirEntry>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl DatabricksClient {
    /// Uploads a file (`PUT /api/2.0/fs/files{path}`); parent directories are created by the
    /// service. Without `overwrite`, an existing file is an `ALREADY_EXISTS` error.
    pub async fn upload_file(&self, path: &str, body: &UploadBody, overwrite: bool) -> Result<()> {
        let api = format!("{}?overwrite={overwrite}", api_path("files", path));
        self.send(Method::PUT, &api, |request| {
            let request = request.header(CONTENT_TYPE, "application/octet-stream");
            Ok(match body {
                UploadBody::Bytes(bytes) => request.body(bytes.clone()),
                UploadBody::File(local) => {
                    let file = std::fs::File::open(local).map_err(|e| {
                        DatabricksError::protocol(
                            format!("upload of {path}"),
                            format!("cannot read {}: {e}", local.display()),
                        )
                    })?;
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
                    request
                        .header(CONTENT_LENGTH, len)
                        .body(reqwest::Body::wrap_stream(stream))
                }
            })
        })
        .await?;
        Ok(())
    }

    /// Starts a download (`GET /api/2.0/fs/files{path}`), optionally of a byte range.
    pub async fn download_file(
        &self,
        path: &str,
        range: Option<&str>,
    ) -> Result<reqwest::Response> {
        self.send(Method::GET, &api_path("files", path), |request| {
            Ok(match range {
                Some(r) => request.header(RANGE, r),
                None => request,
            })
        })
        .await
    }

    /// A file's metadata (`HEAD`), `None` when it does not exist.
    pub async fn file_meta(&self, path: &str) -> Result<Option<FileMeta>> {
        match self.send(Method::HEAD, &api_path("files", path), Ok).await {
            Ok(response) => Ok(Some(FileMeta {
                size: header_u64(&response, CONTENT_LENGTH).unwrap_or(0),
                last_modified: last_modified(&response),
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a file.
    pub async fn delete_file(&self, path: &str) -> Result<()> {
        self.send(Method::DELETE, &api_path("files", path), Ok)
            .await
            .map(drop)
    }

    /// Creates a directory and its parents (no error if it exists).
    pub async fn create_directory(&self, path: &str) -> Result<()> {
        self.send(Method::PUT, &api_path("directories", path), Ok)
            .await
            .map(drop)
    }

    /// Deletes an empty directory.
    pub async fn delete_directory(&self, path: &str) -> Result<()> {
        self.send(Method::DELETE, &api_path("directories", path), Ok)
            .await
            .map(drop)
    }

    /// Whether a directory exists (`HEAD /api/2.0/fs/directories{path}`).
    pub async fn directory_exists(&self, path: &str) -> Result<bool> {
        match self
            .send(Method::HEAD, &api_path("directories", path), Ok)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The direct children of a directory, every page; `None` when it does not exist.
    pub async fn list_directory(&self, path: &str) -> Result<Option<Vec<DirEntry>>> {
        let base = api_path("directories", path);
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let url = match &token {
                Some(t) => format!("{base}?page_token={}", encode_segment(t)),
                None => base.clone(),
            };
            let page: DirPage = match self.get_json(&url).await {
                Ok(p) => p,
                Err(e) if e.is_not_found() && token.is_none() => return Ok(None),
                Err(e) => return Err(e),
            };
            entries.extend(page.contents);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(Some(entries)),
            }
        }
    }
}

fn header_u64(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn last_modified(response: &reqwest::Response) -> Option<DateTime<Utc>> {
    let value = response.headers().get(LAST_MODIFIED)?.to_str().ok()?;
    DateTime::parse_from_rfc2822(value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An `object_store` over the Files API: object `Volumes/c/s/v/x` is the file `/Volumes/c/s/v/x`.
/// There is no server-side copy or rename, so `copy` downloads and uploads again.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    client: DatabricksClient,
    spool_dir: PathBuf,
}

impl fmt::Display for VolumeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE}({})", self.client.host())
    }
}

impl VolumeStore {
    /// A store over `client`'s workspace; large uploads are spooled under the system temp dir.
    pub fn new(client: DatabricksClient) -> VolumeStore {
        VolumeStore {
            client,
            spool_dir: std::env::temp_dir(),
        }
    }

    /// The store and object prefix of a `/Volumes/...` destination.
    pub fn for_destination(
        client: DatabricksClient,
        destination: &str,
    ) -> std::result::Result<(VolumeStore, ObjPath), VolumePathError> {
        check_volume_path(destination)?;
        let prefix = ObjPath::parse(destination.trim_start_matches('/')).map_err(|source| {
            VolumePathError::Object {
                path: destination.to_string(),
                source,
            }
        })?;
        Ok((VolumeStore::new(client), prefix))
    }

    fn file_path(location: &ObjPath) -> String {
        format!("/{location}")
    }

    async fn walk(&self, prefix: Option<&ObjPath>) -> object_store::Result<Vec<ObjectMeta>> {
        let root = prefix
            .map(Self::file_path)
            .unwrap_or_else(|| "/Volumes".into());
        let mut pending = vec![root];
        let mut found = Vec::new();
        while let Some(dir) = pending.pop() {
            let entries = self
                .client
                .list_directory(&dir)
                .await
                .map_err(|e| to_store_error(&dir, e))?
                .unwrap_or_default();
            for entry in entries {
                if entry.is_directory {
                    pending.push(entry.path);
                } else {
                    found.push(entry_meta(&entry)?);
                }
            }
        }
        found.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(found)
    }

    async fn spool_download(&self, from: &ObjPath) -> object_store::Result<Spool> {
        let spool = Spool::create(&self.spool_dir)?;
        let response = self
            .client
            .download_file(&Self::file_path(from), None)
            .await
            .map_err(|e| to_store_error(from.as_ref(), e))?;
        let mut file = tokio::fs::File::create(&spool.path)
            .await
            .map_err(generic)?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| generic(e.without_url()))?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(generic)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(generic)?;
        Ok(spool)
    }
}

fn entry_meta(entry: &DirEntry) -> object_store::Result<ObjectMeta> {
    Ok(ObjectMeta {
        location: ObjPath::parse(entry.path.trim_start_matches('/')).map_err(generic)?,
        last_modified: entry
            .last_modified
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or_default(),
        size: entry.file_size.unwrap_or(0),
        e_tag: None,
        version: None,
    })
}

fn generic(e: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    }
}

fn to_store_error(path: &str, e: DatabricksError) -> object_store::Error {
    if e.is_not_found() {
        return object_store::Error::NotFound {
            path: path.to_string(),
            source: Box::new(e),
        };
    }
    match &e {
        DatabricksError::Api {
            status: 409,
            error_code,
            ..
        } if error_code.as_deref() == Some("ALREADY_EXISTS") => {
            object_store::Error::AlreadyExists {
                path: path.to_string(),
                source: Box::new(e),
            }
        }
        _ => generic(e),
    }
}

fn not_supported(what: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: what.to_string(),
        implementer: STORE.to_string(),
    }
}

#[async_trait]
impl ObjectStore for VolumeStore {
    async fn put_opts(
        &self,
        location: &ObjPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let overwrite = match opts.mode {
            PutMode::Overwrite => true,
            PutMode::Create => false,
            PutMode::Update(_) => return Err(not_supported("conditional put")),
        };
        let bytes: Bytes = payload.into();
        self.client
            .upload_file(
                &Self::file_path(location),
                &UploadBody::Bytes(bytes),
                overwrite,
            )
            .await
            .map_err(|e| to_store_error(location.as_ref(), e))?;
        Ok(PutResult {
            e_tag: None,
            version: None,
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjPath,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let spool = Spool::create(&self.spool_dir)?;
        let file = std::fs::File::create(&spool.path).map_err(generic)?;
        Ok(Box::new(SpooledUpload {
            client: self.client.clone(),
            location: location.clone(),
            file: Arc::new(file),
            written: Arc::new(AtomicU64::new(0)),
            spool: Some(spool),
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.if_match.is_some()
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
            || options.version.is_some()
        {
            return Err(not_supported("conditional get"));
        }
        let path = Self::file_path(location);
        if options.head {
            let meta = self
                .client
                .file_meta(&path)
                .await
                .map_err(|e| to_store_error(location.as_ref(), e))?
                .ok_or_else(|| object_store::Error::NotFound {
                    path: path.clone(),
                    source: "no such file".into(),
                })?;
            let object = ObjectMeta {
                location: location.clone(),
                last_modified: meta.last_modified.unwrap_or_default(),
                size: meta.size,
                e_tag: None,
                version: None,
            };
            return Ok(GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                range: 0..meta.size,
                meta: object,
                attributes: Default::default(),
            });
        }
        let range_header = options.range.as_ref().map(|r| match r {
            GetRange::Bounded(r) => format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
            GetRange::Offset(o) => format!("bytes={o}-"),
            GetRange::Suffix(n) => format!("bytes=-{n}"),
        });
        let response = self
            .client
            .download_file(&path, range_header.as_deref())
            .await
            .map_err(|e| to_store_error(location.as_ref(), e))?;
        let length = header_u64(&response, CONTENT_LENGTH).unwrap_or(0);
        let (range, size) = match content_range(&response) {
            Some((range, total)) => (range, total),
            None => (0..length, length),
        };
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: last_modified(&response).unwrap_or_default(),
            size,
            e_tag: None,
            version: None,
        };
        let stream = response
            .bytes_stream()
            .map_err(|e| generic(e.without_url()))
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjPath>> {
        let client = self.client.clone();
        locations
            .and_then(move |location| {
                let client = client.clone();
                async move {
                    client
                        .delete_file(&Self::file_path(&location))
                        .await
                        .map_err(|e| to_store_error(location.as_ref(), e))?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let store = self.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move { store.walk(prefix.as_ref()).await })
            .map_ok(|all| futures::stream::iter(all.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjPath>,
    ) -> object_store::Result<ListResult> {
        let dir = prefix
            .map(Self::file_path)
            .unwrap_or_else(|| "/Volumes".into());
        let entries = self
            .client
            .list_directory(&dir)
            .await
            .map_err(|e| to_store_error(&dir, e))?
            .unwrap_or_default();
        let mut result = ListResult {
            common_prefixes: Vec::new(),
            objects: Vec::new(),
        };
        for entry in entries {
            if entry.is_directory {
                result
                    .common_prefixes
                    .push(ObjPath::parse(entry.path.trim_start_matches('/')).map_err(generic)?);
            } else {
                result.objects.push(entry_meta(&entry)?);
            }
        }
        Ok(result)
    }

    async fn copy_opts(
        &self,
        from: &ObjPath,
        to: &ObjPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let overwrite = matches!(options.mode, CopyMode::Overwrite);
        let spool = self.spool_download(from).await?;
        self.client
            .upload_file(
                &Self::file_path(to),
                &UploadBody::File(spool.path.clone()),
                overwrite,
            )
            .await
            .map_err(|e| to_store_error(to.as_ref(), e))
    }
}

/// `Content-Range: bytes a-b/total` as (a..b+1, total).
fn content_range(response: &reqwest::Response) -> Option<(Range<u64>, u64)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    Some((start..end + 1, total.parse().ok()?))
}

/// A local spool file, removed when dropped.
struct Spool {
    path: PathBuf,
}

impl Spool {
    fn create(dir: &std::path::Path) -> object_store::Result<Spool> {
        let path = dir.join(format!("bridge-upload-{}.part", uuid::Uuid::new_v4()));
        Ok(Spool { path })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A multipart write: parts are written in place in a local spool file (in any completion
/// order), and the whole file is uploaded on `complete`.
struct SpooledUpload {
    client: DatabricksClient,
    location: ObjPath,
    file: Arc<std::fs::File>,
    written: Arc<AtomicU64>,
    spool: Option<Spool>,
}

impl fmt::Debug for SpooledUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpooledUpload")
            .field("location", &self.location)
            .finish()
    }
}

#[async_trait]
impl MultipartUpload for SpooledUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self
            .written
            .fetch_add(data.content_length() as u64, Ordering::SeqCst);
        let file = Arc::clone(&self.file);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut at = offset;
                for chunk in &data {
                    file.write_all_at(chunk, at)?;
                    at += chunk.len() as u64;
                }
                Ok::<_, std::io::Error>(())
            })
            .await
            .map_err(|e| object_store::Error::JoinError { source: e })?
            .map_err(generic)
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let spool = self
            .spool
            .take()
            .ok_or_else(|| generic(std::io::Error::other("upload already completed")))?;
        self.client
            .upload_file(
                &VolumeStore::file_path(&self.location),
                &UploadBody::File(spool.path.clone()),
                true,
            )
            .await
            .map_err(|e| to_store_error(self.location.as_ref(), e))?;
        Ok(PutResult {
            e_tag: None,
            version: None,
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.spool.take();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_paths_are_checked_and_encoded() {
        assert!(check_volume_path("/Volumes/main/raw/landing/x").is_ok());
        assert!(matches!(
            check_volume_path("/Volumes/main/raw"),
            Err(VolumePathError::NoVolume(_))
        ));
        assert!(check_volume_path("/Volumes/main/raw/v/../x").is_err());
        assert!(check_volume_path("/tmp/x").is_err());
        assert_eq!(
            api_path("files", "/Volumes/main/raw/v/a b/ü.parquet"),
            "/api/2.0/fs/files/Volumes/main/raw/v/a%20b/%C3%BC.parquet"
        );
    }
}
