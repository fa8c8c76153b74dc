//! Remote sources: trust bundles, CRLs, revocation stores, certificates and keys read from
//! `s3://`, `https://` or `http://` object URLs, for a fleet that shares one object store.
//!
//! [`RemoteSources`] fetches objects on its own small tokio runtime (a control thread, never a
//! worker) and keeps, per URL, the copy the live generation uses and a *candidate*: a newer
//! object waiting for a reload to validate it. The configuration loader reads objects through
//! it ([`ObjectFetcher`]); after a reload, [`RemoteSources::commit`] makes the candidates
//! current and writes them to `cache_dir`, or [`RemoteSources::reject`] records why they were
//! refused, so that a corrupt object is not fetched again until it changes. Polling
//! ([`RemoteSources::poll`]) sends conditional requests (`If-None-Match` with the ETag in
//! use): an unchanged object costs one small request and builds nothing. When the store is
//! unreachable the last good copy stays; a restart without the store starts from the cache.

mod cache;
mod client;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use object_store::ObjectStore;
use portcullis_config::{ConfigErrors, ObjectFetcher, ObjectUrl, SourceSettings};
use serde_json::{json, Value};

use self::cache::Copy;
use self::client::{ClientKey, Got};

/// The state of one object URL.
#[derive(Debug)]
struct Object {
    url: ObjectUrl,
    /// The copy the live generation was built from.
    current: Option<Copy>,
    /// Whether `current` was read from the cache and not yet confirmed by the store.
    current_from_cache: bool,
    /// A newer copy waiting for a reload to validate it.
    candidate: Option<Copy>,
    /// Whether `candidate` came from the cache.
    candidate_from_cache: bool,
    /// The latest object a reload refused (ETag, SHA-256): not fetched again until it changes.
    refused: Option<(Option<String>, [u8; 32])>,
    /// Last request to the store, whatever its outcome.
    last_check: Option<SystemTime>,
    /// Last time the store confirmed that the copy in use is its latest.
    last_success: Option<SystemTime>,
    /// Last failure (unreachable store, refused object), cleared by a success.
    last_error: Option<(SystemTime, String)>,
}

impl Object {
    fn new(url: ObjectUrl) -> Self {
        Self {
            url,
            current: None,
            current_from_cache: false,
            candidate: None,
            candidate_from_cache: false,
            refused: None,
            last_check: None,
            last_success: None,
            last_error: None,
        }
    }

    /// The ETag to send in `If-None-Match`: the refused object's (so it is not fetched again
    /// until it changes), else the current copy's.
    fn etag_to_send(&self) -> Option<String> {
        match &self.refused {
            Some((etag, _)) => etag.clone(),
            None => self.current.as_ref().and_then(|c| c.etag.clone()),
        }
    }
}

/// Every object URL the configuration uses, with its copies and status.
pub struct RemoteSources {
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    objects: Mutex<BTreeMap<String, Object>>,
    clients: Mutex<HashMap<ClientKey, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for RemoteSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSources")
            .field("objects", &self.lock_objects().len())
            .finish_non_exhaustive()
    }
}

impl Default for RemoteSources {
    fn default() -> Self {
        Self::new()
    }
}

/// What a poll found.
#[derive(Debug, Default)]
pub struct PollOutcome {
    /// URLs with a new candidate (a reload should validate them).
    pub changed: Vec<String>,
    /// URLs that could not be checked, with why.
    pub failed: Vec<(String, String)>,
}

impl RemoteSources {
    /// No objects yet; the runtime starts on first use.
    pub fn new() -> Self {
        Self {
            runtime: OnceLock::new(),
            objects: Mutex::new(BTreeMap::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock_objects(&self) -> MutexGuard<'_, BTreeMap<String, Object>> {
        // Every update is a few assignments: the map stays consistent if a holder panicked.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The runtime remote requests run on: one worker thread, `portcullis-sources`.
    fn runtime(&self) -> Result<&tokio::runtime::Runtime, String> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("portcullis-sources")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the remote-sources runtime: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The client for `url` under `settings` (built once per bucket/host and settings).
    fn client(
        &self,
        settings: &SourceSettings,
        url: &ObjectUrl,
    ) -> Result<Arc<dyn ObjectStore>, String> {
        let key = ClientKey::of(settings, url);
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(Arc::clone(client));
        }
        let client = client::build(settings, url)?;
        clients.insert(key, Arc::clone(&client));
        Ok(client)
    }

    /// One GET per URL, concurrently on the sources runtime, each bounded in time and size.
    fn get_all(
        &self,
        settings: &SourceSettings,
        requests: Vec<(ObjectUrl, Option<String>)>,
    ) -> Vec<(ObjectUrl, Result<Got, String>)> {
        let runtime = match self.runtime() {
            Ok(runtime) => runtime,
            Err(e) => {
                return requests
                    .into_iter()
                    .map(|(u, _)| (u, Err(e.clone())))
                    .collect()
            }
        };
        // A request's own time limit, one retry, and slack.
        let deadline = settings.timeout * 2 + Duration::from_secs(1);
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(url, etag)| {
                let client = self.client(settings, &url);
                let max = settings.max_object_bytes;
                let task_url = url.clone();
                let task = runtime.spawn(async move {
                    match client {
                        Ok(client) => client::get(client, &task_url, etag, max, deadline).await,
                        Err(e) => Err(e),
                    }
                });
                (url, task)
            })
            .collect();
        runtime.block_on(async {
            let mut results = Vec::with_capacity(tasks.len());
            for (url, task) in tasks {
                let result = task
                    .await
                    .unwrap_or_else(|e| Err(format!("request task failed: {e}")));
                results.push((url, result));
            }
            results
        })
    }

    /// Checks every URL in `urls` with a conditional request. A changed object becomes a
    /// candidate (unless it is byte-identical to the copy in use, or to the last refused one);
    /// an unreachable store is recorded and the copy in use stays.
    pub fn poll(&self, settings: &SourceSettings, urls: &[ObjectUrl]) -> PollOutcome {
        let requests: Vec<(ObjectUrl, Option<String>)> = {
            let mut objects = self.lock_objects();
            urls.iter()
                .map(|url| {
                    let object = objects
                        .entry(url.as_str().to_owned())
                        .or_insert_with(|| Object::new(url.clone()));
                    (url.clone(), object.etag_to_send())
                })
                .collect()
        };
        if requests.is_empty() {
            return PollOutcome::default();
        }
        let results = self.get_all(settings, requests);
        let now = SystemTime::now();
        let mut outcome = PollOutcome::default();
        let mut objects = self.lock_objects();
        for (url, result) in results {
            let Some(object) = objects.get_mut(url.as_str()) else {
                continue;
            };
            object.last_check = Some(now);
            match result {
                Ok(Got::NotModified) => {
                    if object.refused.is_none() {
                        object.last_success = Some(now);
                        object.last_error = None;
                        object.current_from_cache = false;
                    }
                    tracing::debug!(url = %url, "remote source unchanged");
                }
                Ok(Got::Object { bytes, etag }) => {
                    let copy = Copy::fetched(bytes, etag);
                    let same_as_current = object
                        .current
                        .as_ref()
                        .is_some_and(|c| c.sha256 == copy.sha256);
                    let same_as_refused = object
                        .refused
                        .as_ref()
                        .is_some_and(|(_, sha)| *sha == copy.sha256);
                    if same_as_current {
                        if let Some(current) = &mut object.current {
                            current.etag = copy.etag;
                        }
                        object.refused = None;
                        object.last_success = Some(now);
                        object.last_error = None;
                        object.current_from_cache = false;
                    } else if same_as_refused {
                        object.refused = Some((copy.etag, copy.sha256));
                    } else {
                        tracing::info!(url = %url, etag = ?copy.etag, sha256 = %hex::encode(copy.sha256), bytes = copy.bytes.len(), "remote source changed; reloading");
                        object.candidate = Some(copy);
                        object.candidate_from_cache = false;
                        outcome.changed.push(url.as_str().to_owned());
                    }
                }
                Err(error) => {
                    let age = object
                        .last_success
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs());
                    tracing::warn!(url = %url, %error, last_success_age_secs = ?age, "remote source check failed; the last good copy stays");
                    object.last_error = Some((now, error.clone()));
                    outcome.failed.push((url.as_str().to_owned(), error));
                }
            }
        }
        outcome
    }

    /// After a reload that used `settings` and the object URLs `used` went live: candidates
    /// become current and are written to the cache; objects no longer used are forgotten.
    pub fn commit(&self, settings: &SourceSettings, used: &[ObjectUrl]) {
        let now = SystemTime::now();
        let mut objects = self.lock_objects();
        objects.retain(|url, _| used.iter().any(|u| u.as_str() == url));
        for object in objects.values_mut() {
            let Some(candidate) = object.candidate.take() else {
                continue;
            };
            let from_cache = object.candidate_from_cache;
            if !from_cache {
                if let Err(error) = cache::write(&settings.cache_dir, &object.url, &candidate) {
                    tracing::error!(url = %object.url, cache_dir = %settings.cache_dir.display(), %error, "cannot cache the remote source; a restart without the store would fail");
                }
                object.last_success = Some(now);
                object.last_error = None;
            }
            object.refused = None;
            object.current = Some(candidate);
            object.current_from_cache = from_cache;
        }
    }

    /// After a reload was refused: every candidate is dropped. One that `errors` name is
    /// remembered as refused (not fetched again until it changes) with those errors as its
    /// last error; others are fetched again at the next poll.
    pub fn reject(&self, errors: &ConfigErrors) {
        let now = SystemTime::now();
        let mut objects = self.lock_objects();
        for object in objects.values_mut() {
            let Some(candidate) = object.candidate.take() else {
                continue;
            };
            let own: Vec<String> = errors
                .iter()
                .filter(|e| e.file.as_os_str() == object.url.as_str())
                .map(ToString::to_string)
                .collect();
            if own.is_empty() {
                continue;
            }
            let message = format!("refused, the last good copy stays: {}", own.join("; "));
            tracing::error!(url = %object.url, etag = ?candidate.etag, error = %message, "remote source refused");
            object.refused = Some((candidate.etag, candidate.sha256));
            object.last_error = Some((now, message));
        }
    }

    /// Per URL: ETag, SHA-256, size, whether it is served from the cache, last success and
    /// last error with their ages.
    pub fn status(&self) -> Vec<Value> {
        let now = SystemTime::now();
        let time = |t: Option<SystemTime>| {
            t.map(|t| {
                json!({
                    "unix": unix_seconds(t),
                    "age_seconds": now.duration_since(t).map_or(0.0, |d| d.as_secs_f64()),
                })
            })
        };
        self.lock_objects()
            .values()
            .map(|object| {
                let current = object.current.as_ref();
                let state = match (&object.last_error, object.current_from_cache) {
                    (_, true) => "cached",
                    (Some(_), false) => "error",
                    (None, false) => "ok",
                };
                json!({
                    "url": object.url.as_str(),
                    "state": state,
                    "etag": current.and_then(|c| c.etag.clone()),
                    "sha256": current.map(|c| hex::encode(c.sha256)),
                    "bytes": current.map(|c| c.bytes.len()),
                    "fetched": time(current.map(|c| c.fetched_at)),
                    "last_check": time(object.last_check),
                    "last_success": time(object.last_success),
                    "last_error": object.last_error.as_ref().map(|(at, message)| json!({
                        "message": message,
                        "at": time(Some(*at)),
                    })),
                })
            })
            .collect()
    }
}

impl ObjectFetcher for RemoteSources {
    /// The candidate if there is one, else the copy in use; for a URL not seen yet, a fresh
    /// GET, or the cached copy when the store cannot be reached.
    fn fetch(&self, settings: &SourceSettings, url: &ObjectUrl) -> Result<Arc<[u8]>, String> {
        {
            let mut objects = self.lock_objects();
            let object = objects
                .entry(url.as_str().to_owned())
                .or_insert_with(|| Object::new(url.clone()));
            if let Some(copy) = object.candidate.as_ref().or(object.current.as_ref()) {
                return Ok(Arc::clone(&copy.bytes));
            }
        }
        let result = self
            .get_all(settings, vec![(url.clone(), None)])
            .pop()
            .map_or_else(|| Err("no request was made".to_owned()), |(_, r)| r);
        let now = SystemTime::now();
        let mut objects = self.lock_objects();
        let object = objects
            .entry(url.as_str().to_owned())
            .or_insert_with(|| Object::new(url.clone()));
        object.last_check = Some(now);
        let error = match result {
            Ok(Got::Object { bytes, etag }) => {
                object.candidate = Some(Copy::fetched(Arc::clone(&bytes), etag));
                object.candidate_from_cache = false;
                return Ok(bytes);
            }
            Ok(Got::NotModified) => "the store answered 304 Not Modified to a plain GET".into(),
            Err(error) => error,
        };
        object.last_error = Some((now, error.clone()));
        match cache::read(&settings.cache_dir, url, settings.max_object_bytes) {
            Ok(copy) => {
                tracing::warn!(url = %url, %error, cache = %cache::path_of(&settings.cache_dir, url).display(), "remote source unreachable; starting from its cached copy");
                let bytes = Arc::clone(&copy.bytes);
                object.candidate = Some(copy);
                object.candidate_from_cache = true;
                Ok(bytes)
            }
            Err(cache_error) => Err(format!("{error}; no usable cached copy ({cache_error})")),
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
