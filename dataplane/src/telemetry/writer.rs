//! The log writer thread: drains every worker's queue, formats the records and writes them to
//! their files or standard output.
//!
//! Workers never wait for it: each worker pushes into its own bounded single-producer queue
//! and drops (and counts) a record when the queue is full. The writer polls the queues, every
//! few milliseconds while idle, so a worker never makes a wake-up syscall. Files are opened in
//! append mode; [`WriterControl::reopen`] (SIGUSR1, after logrotate renamed them) makes the
//! writer finish the records it holds into the old file and continue in a new one. With
//! `rotate_bytes` the writer rotates by itself (`path` -> `path.1` -> ... `path.N`). W3C
//! files start with their header, again after every rotation.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use portcullis_config::{LogDestination, LogStream};

use super::format::Formatter;
use super::metrics::{LogKind, Metrics};
use super::record::LogRecord;

/// How long the writer sleeps when every queue was empty.
const IDLE_POLL: Duration = Duration::from_millis(5);
/// Buffered output is written out at least this often and past this size.
const FLUSH_BYTES: usize = 256 * 1024;
/// At most one write-error warning per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Requests to the writer thread.
#[derive(Debug, Default)]
pub struct WriterControl {
    reopen: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
}

impl WriterControl {
    /// Asks the writer to reopen its files (after logrotate renamed them).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    /// Asks the writer to write everything queued and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// One log's output.
#[derive(Debug)]
pub struct Sink {
    kind: LogKind,
    formatter: Formatter,
    destination: LogDestination,
    rotate_bytes: Option<u64>,
    rotate_keep: usize,
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    buf: Vec<u8>,
}

impl Sink {
    /// Opens the output of `stream` (fails if the file cannot be opened for appending).
    pub fn open(
        kind: LogKind,
        stream: &LogStream,
        names: &'static [&'static str],
    ) -> io::Result<Self> {
        let mut sink = Self {
            kind,
            formatter: Formatter::new(stream, names),
            destination: stream.destination.clone(),
            rotate_bytes: stream.rotate_bytes,
            rotate_keep: stream.rotate_keep,
            file: None,
            size: 0,
            buf: Vec::with_capacity(FLUSH_BYTES),
        };
        sink.open_output()?;
        Ok(sink)
    }

    fn path(&self) -> Option<&Path> {
        match &self.destination {
            LogDestination::File(path) => Some(path),
            LogDestination::Stdout => None,
        }
    }

    /// Opens (or reopens) the file and writes the header into an empty one; on standard
    /// output only the first time.
    fn open_output(&mut self) -> io::Result<()> {
        match self.path() {
            Some(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                self.size = file.metadata()?.len();
                self.file = Some(file);
                if self.size == 0 {
                    let header = self.formatter.header();
                    self.buf.extend_from_slice(&header);
                }
            }
            None => {
                if self.file.is_none() && self.size == 0 {
                    let header = self.formatter.header();
                    self.buf.extend_from_slice(&header);
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, record: &LogRecord) {
        match record {
            LogRecord::Connection(r) => self.formatter.write(|i| r.value(i), &mut self.buf),
            LogRecord::Access(r) => self.formatter.write(|i| r.value(i), &mut self.buf),
        }
    }

    /// Writes the buffered records out.
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match &mut self.file {
            Some(file) => file.write_all(&self.buf),
            None => {
                let mut out = io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
        };
        self.size += self.buf.len() as u64;
        self.buf.clear();
        result
    }

    /// Rotates when the file has grown past `rotate_bytes`.
    fn rotate_if_due(&mut self) -> io::Result<()> {
        let (Some(limit), Some(path)) = (self.rotate_bytes, self.path().map(Path::to_path_buf))
        else {
            return Ok(());
        };
        if self.size < limit {
            return Ok(());
        }
        self.file = None;
        let numbered = |n: usize| -> PathBuf {
            let mut name = path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        for n in (1..self.rotate_keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&path, numbered(1))?;
        self.size = 0;
        self.open_output()
    }
}

/// The writer thread's state.
struct Writer {
    rings: Vec<rtrb::Consumer<LogRecord>>,
    connection: Option<Sink>,
    access: Option<Sink>,
    control: Arc<WriterControl>,
    metrics: Arc<Metrics>,
    last_warning: Option<Instant>,
}

/// Starts the writer thread over the consumer ends of the workers' queues.
pub fn spawn(
    rings: Vec<rtrb::Consumer<LogRecord>>,
    connection: Option<Sink>,
    access: Option<Sink>,
    metrics: Arc<Metrics>,
) -> io::Result<(Arc<WriterControl>, JoinHandle<()>)> {
    let control = Arc::new(WriterControl::default());
    let mut writer = Writer {
        rings,
        connection,
        access,
        control: Arc::clone(&control),
        metrics,
        last_warning: None,
    };
    let handle = std::thread::Builder::new()
        .name("portcullis-log".into())
        .spawn(move || writer.run())?;
    let _ = control.thread.set(handle.thread().clone());
    Ok((control, handle))
}

impl Writer {
    fn run(&mut self) {
        loop {
            let stopping = self.control.stop.load(Ordering::Acquire);
            let drained = self.drain();
            self.flush();
            if self.control.reopen.swap(false, Ordering::AcqRel) {
                self.reopen();
            }
            if drained == 0 {
                if stopping {
                    return;
                }
                std::thread::park_timeout(IDLE_POLL);
            }
        }
    }

    /// Formats every queued record; returns how many.
    fn drain(&mut self) -> usize {
        let mut total = 0;
        for i in 0..self.rings.len() {
            while let Ok(record) = self.rings[i].pop() {
                total += 1;
                let sink = match &record {
                    LogRecord::Connection(_) => self.connection.as_mut(),
                    LogRecord::Access(_) => self.access.as_mut(),
                };
                if let Some(sink) = sink {
                    sink.push(&record);
                    self.metrics.written[sink.kind as usize].add(1);
                    if sink.buf.len() >= FLUSH_BYTES {
                        let result = sink.flush().and_then(|()| sink.rotate_if_due());
                        self.report(result);
                    }
                }
            }
        }
        total
    }

    fn flush(&mut self) {
        for sink in [self.connection.as_mut(), self.access.as_mut()]
            .into_iter()
            .flatten()
        {
            let result = sink.flush().and_then(|()| sink.rotate_if_due());
            if let Err(e) = result {
                self.metrics.write_errors.add(1);
                warn(&mut self.last_warning, &e);
            }
        }
    }

    fn reopen(&mut self) {
        for sink in [self.connection.as_mut(), self.access.as_mut()]
            .into_iter()
            .flatten()
        {
            if sink.path().is_some() {
                let result = sink.flush().and_then(|()| sink.open_output());
                if let Err(e) = result {
                    self.metrics.write_errors.add(1);
                    warn(&mut self.last_warning, &e);
                }
            }
        }
        tracing::info!("log files reopened");
    }

    fn report(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            self.metrics.write_errors.add(1);
            warn(&mut self.last_warning, &e);
        }
    }
}

fn warn(last: &mut Option<Instant>, error: &io::Error) {
    if last.is_none_or(|at| at.elapsed() >= WARN_INTERVAL) {
        *last = Some(Instant::now());
        tracing::warn!(%error, "writing log records failed");
    }
}

/// Everything the writer thread needs to be stopped, in one place.
#[derive(Debug)]
pub struct WriterHandle {
    /// Requests to the thread.
    pub control: Arc<WriterControl>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WriterHandle {
    /// Wraps a started writer.
    pub fn new(control: Arc<WriterControl>, thread: JoinHandle<()>) -> Self {
        Self {
            control,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Writes everything queued, stops the thread and waits for it.
    pub fn stop(&self) {
        self.control.stop();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the log writer thread panicked");
            }
        }
    }
}
