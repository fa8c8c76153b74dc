//! The QuickJS engine of one thread (through `rquickjs`): one runtime and one context per
//! worker thread, created on first use, holding each connection function compiled once.
//!
//! QuickJS is an interpreter (no JIT, so no writable-and-executable memory) with ES2023,
//! async/await and a job queue the embedder runs: a call settles its promises by running that
//! queue until the handler's promise settles, all within the verify callback. The runtime has a
//! memory limit and a stack limit; the time limit is QuickJS's interrupt handler, polled while
//! code runs, checked against a per-call [`Budget`] (and the job loop checks it itself). The
//! limit is execution time, the thread's CPU time, as CloudFront's: a worker descheduled by the
//! kernel in the middle of a call does not fail a good function (the wall clock is the cheap
//! first test; the thread's CPU clock is read only once it says the limit may be reached).
//!
//! The `cloudfront` module is generated per function (`cloudfront:<n>`), its `kvs()` bound
//! through `import.meta` to the function's store: a function can read only its own store.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::convert::Coerced;
use rquickjs::function::Opt;
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::promise::PromiseState;
use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Persistent, Runtime, Value,
};

use super::{
    cut_custom_data, CallReport, CompileError, ConnectionFunction, Decision, FunctionFailure,
    FunctionInput, FunctionRefusal, KvsSource,
};

/// Memory a thread's runtime may allocate (all its functions together).
pub const MEMORY_LIMIT: usize = 32 * 1024 * 1024;
/// Stack a call may use.
const STACK_LIMIT: usize = 256 * 1024;
/// Compiled functions a thread keeps before its engine starts over (QuickJS never frees a
/// module while its context lives, so reloads would otherwise accumulate them).
const MAX_COMPILED: usize = 64;
/// Time a module's top-level code may take when it is compiled.
const EVALUATION_LIMIT: Duration = Duration::from_millis(100);
/// Console lines kept per call, and their total size (`function test`).
const MAX_CONSOLE_LINES: usize = 100;
const MAX_CONSOLE_BYTES: usize = 16 * 1024;
/// The name under which the appended export makes the handler reachable.
const HANDLER_EXPORT: &str = "__portcullisConnectionHandler";

thread_local! {
    /// This thread's engine (None until a function first runs here, or after a reset).
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    /// The running call's (or compilation's) time budget.
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
    /// The interrupt handler stopped the running call.
    static INTERRUPTED: Cell<bool> = const { Cell::new(false) };
    /// The store of the function being compiled (read by the `cloudfront` loader).
    static COMPILING: RefCell<Option<Option<KvsSource>>> = const { RefCell::new(None) };
    /// Numbers the generated `cloudfront:<n>` modules.
    static MODULE_SEQ: Cell<u64> = const { Cell::new(0) };
    /// The running call (console output goes there).
    static CURRENT: RefCell<Option<Rc<CallState>>> = const { RefCell::new(None) };
}

/// One thread's runtime and context with its compiled handlers. Fields drop in order: the
/// handlers before the context, the context before the runtime.
struct Engine {
    handlers: HashMap<u64, Persistent<Function<'static>>>,
    /// Builds a call's `connection` object (see [`CONNECTION_FACTORY`]).
    factory: Persistent<Function<'static>>,
    /// Numbers calls, so that a `connection` object kept from an earlier call decides nothing.
    calls: u64,
    compiled: usize,
    context: Context,
    runtime: Runtime,
}

impl Engine {
    fn new() -> Result<Self, String> {
        let runtime = Runtime::new().map_err(|e| format!("QuickJS runtime: {e}"))?;
        runtime.set_memory_limit(MEMORY_LIMIT);
        runtime.set_max_stack_size(STACK_LIMIT);
        runtime.set_interrupt_handler(Some(Box::new(|| {
            let stop = over_budget();
            if stop {
                INTERRUPTED.set(true);
            }
            stop
        })));
        runtime.set_loader(CloudfrontResolver, CloudfrontLoader);
        let context = Context::full(&runtime).map_err(|e| format!("QuickJS context: {e}"))?;
        let factory = context
            .with(|ctx| install_globals(&ctx))
            .map_err(|e| format!("QuickJS globals: {e}"))?;
        Ok(Self {
            handlers: HashMap::new(),
            factory,
            calls: 0,
            compiled: 0,
            context,
            runtime,
        })
    }

    /// The handler of `function`, compiled on first use.
    fn handler(
        &mut self,
        function: &ConnectionFunction,
    ) -> Result<Persistent<Function<'static>>, CompileError> {
        if let Some(handler) = self.handlers.get(&function.id()) {
            return Ok(handler.clone());
        }
        let handler = self.compile(function)?;
        self.handlers.insert(function.id(), handler.clone());
        self.compiled += 1;
        Ok(handler)
    }

    /// Compiles and evaluates the function's module; returns its `connectionHandler`.
    fn compile(
        &self,
        function: &ConnectionFunction,
    ) -> Result<Persistent<Function<'static>>, CompileError> {
        let source = format!(
            "{}\n;export {{ connectionHandler as {HANDLER_EXPORT} }};\n",
            function.source()
        );
        COMPILING.with(|c| *c.borrow_mut() = Some(function.kvs().cloned()));
        BUDGET.set(Some(Budget::new(EVALUATION_LIMIT)));
        INTERRUPTED.set(false);
        let result = self.context.with(|ctx| {
            let module = Module::declare(ctx.clone(), function.name().as_bytes(), source)
                .catch(&ctx)
                .map_err(|e| compile_error(&e, function.name()))?;
            let (module, promise) = module
                .eval()
                .catch(&ctx)
                .map_err(|e| compile_error(&e, function.name()))?;
            while promise.state() == PromiseState::Pending
                && !over_budget()
                && ctx.execute_pending_job()
            {}
            match promise.state() {
                PromiseState::Resolved => {}
                PromiseState::Rejected => {
                    let error = promise.result::<Value>().map(|r| r.catch(&ctx));
                    return Err(match error {
                        Some(Err(e)) => compile_error(&e, function.name()),
                        _ => CompileError {
                            message: "the module's top-level code failed".into(),
                            location: None,
                        },
                    });
                }
                PromiseState::Pending => {
                    return Err(CompileError {
                        message: "the module's top-level code did not finish".into(),
                        location: None,
                    })
                }
            }
            let handler: Value = module.get(HANDLER_EXPORT).map_err(|e| CompileError {
                message: format!("connectionHandler: {e}"),
                location: None,
            })?;
            match handler.into_function() {
                Some(handler) => Ok(Persistent::save(&ctx, handler)),
                None => Err(CompileError {
                    message: "connectionHandler is not a function".into(),
                    location: None,
                }),
            }
        });
        BUDGET.set(None);
        COMPILING.with(|c| *c.borrow_mut() = None);
        if INTERRUPTED.replace(false) {
            return Err(CompileError {
                message: format!(
                    "the module's top-level code ran past {} ms",
                    EVALUATION_LIMIT.as_millis()
                ),
                location: None,
            });
        }
        result
    }

    /// Runs one call; returns the report and whether the engine must start over (promise
    /// jobs of this call still queued after its budget ran out).
    fn call(
        &mut self,
        function: &ConnectionFunction,
        input: &FunctionInput<'_>,
        collect_console: bool,
    ) -> (CallReport, bool) {
        let refusal = |failure| FunctionRefusal {
            function: function.name().clone(),
            failure,
        };
        let handler = match self.handler(function) {
            Ok(handler) => handler,
            Err(e) => {
                let report = CallReport {
                    decision: Err(refusal(FunctionFailure::Unavailable(e.to_string().into()))),
                    custom_data: None,
                    console: Vec::new(),
                    elapsed: Duration::ZERO,
                };
                return (report, false);
            }
        };
        self.calls += 1;
        let state = Rc::new(CallState::new(
            self.calls,
            collect_console,
            input.connection_id,
            function.name(),
        ));
        let factory = self.factory.clone();
        let limit = function.time_limit();
        let mut start = Instant::now();
        let outcome = self.context.with(|ctx| {
            let handler = match handler.restore(&ctx) {
                Ok(handler) => handler,
                Err(e) => {
                    return Outcome::Failed(FunctionFailure::Unavailable(e.to_string().into()))
                }
            };
            let connection = match connection_object(&ctx, factory, input, state.call) {
                Ok(connection) => connection,
                Err(e) => {
                    return Outcome::Failed(FunctionFailure::Unavailable(e.to_string().into()))
                }
            };
            CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(&state)));
            start = Instant::now();
            BUDGET.set(Some(Budget::new(limit)));
            INTERRUPTED.set(false);
            let outcome = match handler.call::<_, Value>((connection,)).catch(&ctx) {
                Err(e) => Outcome::Failed(FunctionFailure::Exception(describe(&e).into())),
                Ok(value) => match value.into_promise() {
                    None => Outcome::Settled,
                    Some(promise) => loop {
                        match promise.state() {
                            PromiseState::Resolved => break Outcome::Settled,
                            PromiseState::Rejected => {
                                let reason = match promise.result::<Value>().map(|r| r.catch(&ctx))
                                {
                                    Some(Err(e)) => describe(&e),
                                    _ => "rejected".to_owned(),
                                };
                                break Outcome::Failed(FunctionFailure::Rejected(reason.into()));
                            }
                            PromiseState::Pending => {
                                if INTERRUPTED.get() || over_budget() {
                                    break Outcome::Settled;
                                }
                                if !ctx.execute_pending_job() {
                                    break Outcome::NeverSettled;
                                }
                            }
                        }
                    },
                },
            };
            // Jobs this call queued but did not need (bounded by its budget), so that none
            // runs during another connection's call.
            while !INTERRUPTED.get() && !over_budget() && ctx.execute_pending_job() {}
            outcome
        });
        let leftover = self.runtime.is_job_pending();
        let elapsed = start.elapsed();
        let timed_out = INTERRUPTED.replace(false) || (elapsed > limit && over_budget());
        BUDGET.set(None);
        CURRENT.with(|c| *c.borrow_mut() = None);
        let decision = match (timed_out, outcome, state.decision.get()) {
            (true, _, _) => Err(FunctionFailure::TimeLimit(limit)),
            (false, Outcome::Failed(failure), _) => Err(failure),
            (false, _, Some(Decision::Allow)) => Ok(()),
            (false, _, Some(Decision::Deny)) => Err(FunctionFailure::Denied),
            (false, Outcome::Settled, None) => Err(FunctionFailure::NoDecision),
            (false, Outcome::NeverSettled, None) => Err(FunctionFailure::NeverSettled),
        };
        let report = CallReport {
            decision: decision.map_err(refusal),
            custom_data: state.custom_data.take(),
            console: state.console.take(),
            elapsed,
        };
        (report, leftover)
    }
}

/// A call's time budget: `limit` of the thread's CPU time, and at most [`WALL_FACTOR`] times
/// that of wall time (a call on a thread starved of CPU still ends).
#[derive(Debug, Clone, Copy)]
struct Budget {
    limit: Duration,
    cpu_start: Duration,
    /// Before this, the limit cannot have been reached (CPU time never outruns wall time).
    check_after: Instant,
    wall_cap: Instant,
}

/// Wall time a call may take, in multiples of its CPU time limit.
const WALL_FACTOR: u32 = 20;

impl Budget {
    fn new(limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            limit,
            cpu_start: thread_cpu_time(),
            check_after: now + limit,
            wall_cap: now + limit * WALL_FACTOR,
        }
    }
}

/// Whether the running call used up its budget. Reads the wall clock (vDSO, no system call)
/// and, only once that many milliseconds passed, the thread's CPU clock; a call that was
/// descheduled gets the CPU time it has left.
fn over_budget() -> bool {
    let Some(mut budget) = BUDGET.get() else {
        return false;
    };
    let now = Instant::now();
    if now < budget.check_after {
        return false;
    }
    let used = thread_cpu_time().saturating_sub(budget.cpu_start);
    if used >= budget.limit || now >= budget.wall_cap {
        return true;
    }
    budget.check_after = now + (budget.limit - used);
    BUDGET.set(Some(budget));
    false
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`; CLOCK_THREAD_CPUTIME_ID always
    // exists on Linux.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// How the handler ended, before the decision is read.
enum Outcome {
    /// Returned, or its promise resolved (or the budget ran out).
    Settled,
    /// Its promise is pending and no job is left that could settle it.
    NeverSettled,
    /// It threw, its promise was rejected, or the engine failed.
    Failed(FunctionFailure),
}

/// What one call records: the decision (first call wins), the custom log data (last call
/// wins) and, for `function test`, the console lines.
struct CallState {
    /// The call's number (what its `connection` object's methods carry).
    call: u64,
    decision: Cell<Option<Decision>>,
    custom_data: RefCell<Option<Box<str>>>,
    collect_console: bool,
    console: RefCell<Vec<String>>,
    console_bytes: Cell<usize>,
    connection_id: Box<str>,
    function: Box<str>,
}

impl CallState {
    fn new(call: u64, collect_console: bool, connection_id: &str, function: &str) -> Self {
        Self {
            call,
            decision: Cell::new(None),
            custom_data: RefCell::new(None),
            collect_console,
            console: RefCell::new(Vec::new()),
            console_bytes: Cell::new(0),
            connection_id: connection_id.into(),
            function: function.into(),
        }
    }

    fn decide(&self, decision: Decision) {
        if self.decision.get().is_none() {
            self.decision.set(Some(decision));
        }
    }

    fn log(&self, line: &str) {
        tracing::debug!(
            connection_id = %self.connection_id,
            function = %self.function,
            "console.log: {line}"
        );
        if self.collect_console {
            let mut console = self.console.borrow_mut();
            let bytes = self.console_bytes.get() + line.len();
            if console.len() < MAX_CONSOLE_LINES && bytes <= MAX_CONSOLE_BYTES {
                console.push(line.to_owned());
                self.console_bytes.set(bytes);
            }
        }
    }
}

/// Runs `function` for `input` on this thread's engine (created on first use, started over
/// when it cannot be used any more).
pub(super) fn call(
    function: &ConnectionFunction,
    input: &FunctionInput<'_>,
    collect_console: bool,
) -> CallReport {
    ENGINE.with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            // A function cannot start a handshake, so this is never re-entered; fail closed.
            return unavailable(function, "the engine is busy");
        };
        if slot
            .as_ref()
            .is_none_or(|engine| engine.compiled >= MAX_COMPILED && !engine.handlers.contains_key(&function.id()))
        {
            *slot = None;
            match Engine::new() {
                Ok(engine) => *slot = Some(engine),
                Err(e) => return unavailable(function, &e),
            }
        }
        let Some(engine) = slot.as_mut() else {
            return unavailable(function, "no engine");
        };
        let (report, reset) = engine.call(function, input, collect_console);
        if reset {
            tracing::warn!(
                function = %function.name(),
                "connection function left promise jobs running past its time limit; this thread's engine starts over"
            );
            *slot = None;
        }
        report
    })
}

fn unavailable(function: &ConnectionFunction, why: &str) -> CallReport {
    CallReport {
        decision: Err(FunctionRefusal {
            function: function.name().clone(),
            failure: FunctionFailure::Unavailable(why.into()),
        }),
        custom_data: None,
        console: Vec::new(),
        elapsed: Duration::ZERO,
    }
}

/// Compiles `function` in a scratch engine (what `check`, start-up and a reload do).
pub(super) fn check(function: &ConnectionFunction) -> Result<(), CompileError> {
    let engine = Engine::new().map_err(|message| CompileError {
        message,
        location: None,
    })?;
    engine.compile(function).map(drop)
}

/// What a `connection` method asks of the running call.
const ALLOW: i32 = 1;
const DENY: i32 = 2;
const LOG_CUSTOM_DATA: i32 = 3;

/// Installs `console` (log, info, warn, error, debug: one line each, objects as JSON) and
/// returns the `connection` factory.
fn install_globals(ctx: &Ctx<'_>) -> rquickjs::Result<Persistent<Function<'static>>> {
    let log = Function::new(ctx.clone(), |line: Coerced<String>| {
        CURRENT.with(|current| {
            if let Some(state) = current.borrow().as_ref() {
                state.log(&line.0);
            }
        });
    })?;
    ctx.globals().set("__portcullisLog", log)?;
    ctx.eval::<(), _>(
        r#"(() => {
  const log = globalThis.__portcullisLog;
  delete globalThis.__portcullisLog;
  const text = (v) => {
    if (typeof v === "string") return v;
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    try { const json = JSON.stringify(v); return json === undefined ? String(v) : json; }
    catch { return String(v); }
  };
  const write = (...values) => log(values.map(text).join(" "));
  globalThis.console = Object.freeze({ log: write, info: write, warn: write, error: write, debug: write });
})();"#,
    )?;
    // The methods' native side: acts only for the running call (a `connection` object kept in
    // a global from an earlier call decides nothing).
    let native = Function::new(
        ctx.clone(),
        |call: f64, op: i32, text: Opt<Coerced<String>>| {
            CURRENT.with(|current| {
                let current = current.borrow();
                let Some(state) = current.as_ref().filter(|s| s.call as f64 == call) else {
                    return;
                };
                match op {
                    ALLOW => state.decide(Decision::Allow),
                    DENY => state.decide(Decision::Deny),
                    LOG_CUSTOM_DATA => {
                        let text = text.0.map(|t| t.0).unwrap_or_default();
                        *state.custom_data.borrow_mut() = Some(cut_custom_data(&text).into());
                    }
                    _ => {}
                }
            });
        },
    )?;
    let make: Function = ctx.eval(CONNECTION_FACTORY)?;
    let factory: Function = make.call((native,))?;
    Ok(Persistent::save(ctx, factory))
}

/// Builds a `connection` from positional values in one call: object literals compile to
/// fixed shapes with their property names interned once, far cheaper than setting each
/// property from Rust.
const CONNECTION_FACTORY: &str = r#"(native) => (call, serialNumber, subject, issuer, notBefore, notAfter,
    sha256Fingerprint, subjectAlternativeNames, clientIp, endpoint, distributionId, connectionId,
    tlsVersion) => {
  const connection = {
    clientIp, endpoint, distributionId, connectionId, tlsVersion,
    allow() { native(call, 1); },
    deny() { native(call, 2); },
    logCustomData(text) { native(call, 3, text); },
  };
  if (serialNumber !== undefined) {
    connection.clientCertificate = { certificates: { leaf: {
      serialNumber, subject, issuer, validity: { notBefore, notAfter }, sha256Fingerprint,
      subjectAlternativeNames,
    } } };
  }
  return connection;
}"#;

/// The `connection` argument of call number `call`: the event fields and the decision
/// methods.
fn connection_object<'js>(
    ctx: &Ctx<'js>,
    factory: Persistent<Function<'static>>,
    input: &FunctionInput<'_>,
    call: u64,
) -> rquickjs::Result<Value<'js>> {
    let factory = factory.restore(ctx)?;
    let mut ip = String::with_capacity(40);
    let _ = write!(ip, "{}", input.client_ip);
    let mut args = rquickjs::function::Args::new(ctx.clone(), 13);
    args.push_arg(call as f64)?;
    match input.leaf {
        Some(leaf) => {
            args.push_arg(&*leaf.serial)?;
            args.push_arg(&*leaf.subject)?;
            args.push_arg(&*leaf.issuer)?;
            args.push_arg(leaf.not_before())?;
            args.push_arg(leaf.not_after())?;
            args.push_arg(&*leaf.sha256)?;
            let names: Vec<&str> = leaf
                .subject_alternative_names
                .iter()
                .map(|n| &**n)
                .collect();
            args.push_arg(names)?;
        }
        None => {
            for _ in 0..7 {
                args.push_arg(rquickjs::Undefined)?;
            }
        }
    }
    args.push_arg(ip)?;
    args.push_arg(input.endpoint)?;
    args.push_arg(input.distribution_id)?;
    args.push_arg(input.connection_id)?;
    args.push_arg(input.tls_version)?;
    factory.call_arg(args)
}

/// `TypeError: message` of an exception object.
fn name_and_message(e: &rquickjs::Exception<'_>) -> String {
    let name: Option<String> = e
        .get::<_, Option<Coerced<String>>>("name")
        .ok()
        .flatten()
        .map(|c| c.0);
    match (name, e.message()) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        (None, Some(message)) => message,
        (Some(name), None) => name,
        (None, None) => "exception".to_owned(),
    }
}

/// An exception as text: `Error: message (at file:line:column)`.
fn describe(error: &CaughtError<'_>) -> String {
    match error {
        CaughtError::Exception(e) => {
            let mut text = name_and_message(e);
            if let Some(frame) = e.stack().as_deref().and_then(first_frame) {
                let _ = write!(text, " (at {frame})");
            }
            text
        }
        CaughtError::Value(v) => v
            .get::<Coerced<String>>()
            .map_or_else(|_| "a thrown value".to_owned(), |c| c.0),
        CaughtError::Error(e) => e.to_string(),
    }
}

/// `file:line:column` of the first stack frame.
fn first_frame(stack: &str) -> Option<&str> {
    let line = stack
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("at "))?;
    let inner = line.rsplit_once('(').map_or(&line[3..], |(_, rest)| rest);
    Some(inner.trim_end_matches(')'))
}

/// A compile error with its line and column in the function's file.
fn compile_error(error: &CaughtError<'_>, file: &str) -> CompileError {
    let (message, stack) = match error {
        CaughtError::Exception(e) => (name_and_message(e), e.stack()),
        other => (describe(other), None),
    };
    let message = if message.contains(HANDLER_EXPORT)
        || message.contains("connectionHandler") && message.contains("not")
    {
        "the function must define connectionHandler(connection)".to_owned()
    } else {
        message
    };
    let location = stack.as_deref().and_then(|stack| {
        stack.lines().find_map(|line| {
            let line = line.trim().strip_prefix("at ")?;
            let inner = line.rsplit_once('(').map_or(line, |(_, rest)| rest);
            let inner = inner.trim_end_matches(')');
            let rest = inner.strip_prefix(file)?.strip_prefix(':')?;
            let (l, c) = rest.split_once(':')?;
            Some((l.parse().ok()?, c.parse().ok()?))
        })
    });
    CompileError { message, location }
}

/// Resolves `cloudfront` (the only import) to a module generated for the function being
/// compiled.
struct CloudfrontResolver;

impl Resolver for CloudfrontResolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if name == "cloudfront" && !base.starts_with("cloudfront:") {
            let seq = MODULE_SEQ.get() + 1;
            MODULE_SEQ.set(seq);
            return Ok(format!("cloudfront:{seq}"));
        }
        Err(rquickjs::Exception::throw_reference(
            ctx,
            &format!("cannot import {name:?}: a connection function may import only 'cloudfront'"),
        ))
    }
}

/// Generates `cloudfront:<n>`: `cf.kvs()` returns the handle of the store of the function
/// being compiled, reached through `import.meta` (nothing global).
struct CloudfrontLoader;

impl Loader for CloudfrontLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let kvs = COMPILING.with(|c| c.borrow().clone()).flatten();
        let Some(kvs) = kvs else {
            return Module::declare(ctx.clone(), name, CLOUDFRONT_WITHOUT_KVS);
        };
        let module = Module::declare(ctx.clone(), name, CLOUDFRONT_WITH_KVS)?;
        let store = Object::new(ctx.clone())?;
        store.set("name", kvs.name())?;
        let source = kvs.clone();
        store.set(
            "loaded",
            Function::new(ctx.clone(), move || source.store().is_some())?,
        )?;
        let source = kvs.clone();
        // undefined when the store is not loaded.
        store.set(
            "exists",
            Function::new(ctx.clone(), move |key: Coerced<String>| {
                source.exists(&key.0)
            })?,
        )?;
        let source = kvs.clone();
        store.set(
            "get",
            Function::new(ctx.clone(), move |key: Coerced<String>| {
                source.get(&key.0).flatten().map(|v| v.to_string())
            })?,
        )?;
        store.set(
            "meta",
            Function::new(ctx.clone(), move || {
                kvs.meta()
                    .map(|(created, updated, count)| vec![created, updated, count.to_string()])
                    .unwrap_or_default()
            })?,
        )?;
        module.meta()?.set("store", store)?;
        Ok(module)
    }
}

/// `cloudfront` for a function with a store: promises as in CloudFront (a missing key rejects
/// `get`; an unloaded store rejects every call).
const CLOUDFRONT_WITH_KVS: &str = r#"
const store = import.meta.store;
const unloaded = () => new Error(`key-value store ${store.name} is not loaded`);
const bytes = (text) => {
  const raw = unescape(encodeURIComponent(text));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
};
const handle = Object.freeze({
  // Not an async function: one settled promise, no extra frame on the hot path.
  exists(key) {
    let found;
    try { found = store.exists(String(key)); } catch (e) { return Promise.reject(e); }
    return found === undefined ? Promise.reject(unloaded()) : Promise.resolve(found);
  },
  async get(key, options) {
    if (!store.loaded()) throw unloaded();
    const value = store.get(String(key));
    if (value === undefined) throw new Error(`key not found: ${key}`);
    const format = options?.format ?? "string";
    switch (format) {
      case "string": return value;
      case "json": return JSON.parse(value);
      case "bytes": return bytes(value);
      default: throw new TypeError(`unknown format: ${format} (expected "string", "json" or "bytes")`);
    }
  },
  async meta() {
    const meta = store.meta();
    if (meta.length !== 3) throw unloaded();
    return { creationDateTime: meta[0], lastUpdatedDateTime: meta[1], keyCount: Number(meta[2]) };
  },
});
export default Object.freeze({ kvs() { return handle; } });
"#;

/// `cloudfront` for a function without a store.
const CLOUDFRONT_WITHOUT_KVS: &str = r#"
export default Object.freeze({
  kvs() {
    throw new Error("no key-value store is associated with this connection function (set kvs in [site.mtls.connection_function])");
  },
});
"#;
