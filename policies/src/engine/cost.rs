//! The cost budget of one evaluation.
//!
//! The interpreter has no cost accounting and no cancellation, so a rule
//! could allocate without bound in one call (`lists.range(n)`, a `replace`
//! or `format` whose result grows with the square of its input) or in a
//! loop (a nested `map` over large inputs), and a rule abandoned after its
//! time limit kept doing so on its worker thread. [`super::meter`] rewrites
//! every rule so that each call, list or map it builds and each
//! comprehension's range is charged here, against a per-thread budget set
//! for one evaluation ([`metered`]). Once the budget or the deadline is
//! spent every further charge fails, so the evaluation unwinds at its next
//! step, on the caller's thread or on a worker that was given up on.
//!
//! A unit is one value (a number, a list element, a map entry) or 32 bytes
//! of a string; a built value is charged its whole depth, so a list holding
//! the same large value many times costs what walking it costs. Reading
//! an input is charged what the interpreter copies (`super::reads`).

use std::cell::Cell;
use std::time::{Duration, Instant};

use kube_cel::cel::objects::Key;
use kube_cel::cel::parser::Expression;
use kube_cel::cel::{ExecutionError, FunctionContext, ResolveResult, Value};

use super::reads::Weights;

/// Function names the meter inserts. `@` cannot start an identifier in a
/// rule, so no rule can call or shadow them.
pub(crate) const CHARGE: &str = "@barelb.charge";
pub(crate) const RANGE: &str = "@barelb.range";
pub(crate) const GUARD: &str = "@barelb.guard";
pub(crate) const READ: &str = "@barelb.read";

/// Why an evaluation was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spent {
    Cost,
    Time,
}

#[derive(Clone, Copy)]
struct Meter {
    remaining: u64,
    /// None: bounded by cost alone (an evaluation on the caller's thread).
    deadline: Option<Instant>,
    spent: Option<Spent>,
    /// What reading each input costs (`super::reads`).
    reads: Weights,
}

thread_local! {
    static METER: Cell<Option<Meter>> = const { Cell::new(None) };
}

/// Runs `f` (one evaluation on this thread) under a budget of `units` and
/// `time` (None: units alone); `Err` when either ran out, whatever `f`
/// returned — an error the rule caught (`||`, `exists`) must not turn into
/// an allow.
pub(crate) fn metered<T>(
    units: u64,
    time: Option<Duration>,
    reads: Weights,
    f: impl FnOnce() -> T,
) -> Result<T, Spent> {
    let outer = METER.with(|m| {
        m.replace(Some(Meter {
            remaining: units,
            deadline: time.map(|t| Instant::now() + t),
            spent: None,
            reads,
        }))
    });
    let value = f();
    let meter = METER.with(|m| m.replace(outer));
    match meter.and_then(|m| m.spent) {
        Some(spent) => Err(spent),
        None => Ok(value),
    }
}

/// Takes `units` from this thread's budget.
fn spend(units: u64) -> Result<(), ExecutionError> {
    let spent = METER.with(|cell| {
        // Outside `metered` there is no budget to charge: only the engine
        // evaluates rules, and it always meters them.
        let mut meter = cell.get()?;
        if meter.spent.is_none() {
            if units > meter.remaining {
                meter.spent = Some(Spent::Cost);
            } else if meter.deadline.is_some_and(|d| Instant::now() > d) {
                meter.spent = Some(Spent::Time);
            } else {
                meter.remaining -= units;
            }
        }
        cell.set(Some(meter));
        meter.spent
    });
    match spent {
        None => Ok(()),
        Some(Spent::Cost) => Err(ExecutionError::function_error("cost", "budget spent")),
        Some(Spent::Time) => Err(ExecutionError::function_error("cost", "time limit passed")),
    }
}

/// The budget left on this thread (`u64::MAX` outside `metered`).
fn remaining() -> u64 {
    METER.with(|m| m.get().map_or(u64::MAX, |m| m.remaining))
}

/// Units for `bytes` bytes of text.
pub(crate) fn text(bytes: usize) -> u64 {
    1 + (bytes / 32) as u64
}

/// What walking `v` costs, counted until it passes `cap`.
pub(crate) fn weight(v: &Value, cap: u64) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![v];
    while let Some(v) = pending.pop() {
        total = total.saturating_add(match v {
            Value::String(s) => text(s.len()),
            Value::Bytes(b) => text(b.len()),
            Value::List(l) => {
                // Counted before pushed: a list past the cap is not walked.
                if total.saturating_add(l.len() as u64) <= cap {
                    pending.extend(l.iter());
                }
                1 + l.len() as u64
            }
            Value::Map(m) => {
                if total.saturating_add(m.map.len() as u64) <= cap {
                    for (k, v) in m.map.iter() {
                        total = total.saturating_add(match k {
                            Key::String(s) => text(s.len()),
                            _ => 1,
                        });
                        pending.push(v);
                    }
                }
                1 + m.map.len() as u64
            }
            _ => 1,
        });
        if total > cap {
            break;
        }
    }
    total
}

/// `@barelb.charge(v)`: charges what `v` weighs and passes it on.
fn charge(v: Value) -> ResolveResult {
    spend(weight(&v, remaining()))?;
    Ok(v)
}

/// `@barelb.read(i)`: a read of an input (`super::reads`), in the
/// condition of `@barelb.read(i) ? <the read> : null`.
fn read(i: i64) -> ResolveResult {
    let units = METER.with(|m| {
        m.get()
            .map_or(0, |m| m.reads.get(i as usize).copied().unwrap_or(0))
    });
    spend(units)?;
    Ok(Value::Bool(true))
}

/// `@barelb.range(v)`: a comprehension's range. The interpreter copies
/// each element into the loop variable, so iterating costs what the range
/// weighs (a map's keys: one unit each at least).
fn range(v: Value) -> ResolveResult {
    spend(weight(&v, remaining()))?;
    Ok(v)
}

/// `@barelb.guard(call)`: a call whose result or running time can grow
/// faster than its arguments. Evaluates the arguments, charges what the
/// call will cost before making it, then makes it on the evaluated values.
fn guard(ftx: &FunctionContext, call: Expression) -> ResolveResult {
    let Expression {
        expr: kube_cel::cel::common::ast::Expr::Call(c),
        ..
    } = call
    else {
        return Err(ftx.error("internal: a guard around something other than a call"));
    };
    let name = super::meter::qualified(&c);
    let mut scope = ftx.ptx.new_inner_scope();
    let mut this = None;
    let target = match &c.target {
        // `lists.range(n)`: the prefix is part of the name, not a value.
        Some(t) if name.contains('.') => Some(t.clone()),
        Some(t) => {
            let v = ftx.ptx.resolve(t)?;
            this = Some(v.clone());
            scope.add_variable_from_value("@this", v);
            Some(Box::new(super::meter::ident("@this")))
        }
        None => None,
    };
    let mut args = Vec::with_capacity(c.args.len());
    let mut values = Vec::with_capacity(c.args.len());
    for (i, a) in c.args.iter().enumerate() {
        let v = ftx.ptx.resolve(a)?;
        let var = format!("@arg{i}");
        values.push(v.clone());
        scope.add_variable_from_value(var.clone(), v);
        args.push(super::meter::ident(&var));
    }
    spend(before(&name, this.as_ref(), &values))?;
    let call = super::meter::call(&c.func_name, target, args);
    let v = scope.resolve(&call)?;
    charge(v)
}

/// What a guarded call costs before it is made (its result is charged
/// after, like every call's).
pub(crate) fn before(name: &str, this: Option<&Value>, args: &[Value]) -> u64 {
    let len = |v: Option<&Value>| match v {
        Some(Value::List(l)) => l.len() as u64,
        Some(Value::String(s)) => s.len() as u64,
        _ => 0,
    };
    let string = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.to_string(),
        _ => String::new(),
    };
    match name {
        // The list is built in one allocation.
        "lists.range" => match args.first() {
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 1,
        },
        // Every match (every character for an empty pattern) grows the
        // result by the replacement.
        "replace" => {
            let (s, from, to) = (string(this), string(args.first()), string(args.get(1)));
            let mut matches = if from.is_empty() {
                s.chars().count() as u64 + 1
            } else {
                s.matches(from.as_str()).count() as u64
            };
            if let Some(Value::Int(n)) = args.get(2) {
                matches = matches.min((*n).max(0) as u64);
            }
            text(s.len()).saturating_add(matches.saturating_mul(text(to.len())))
        }
        // The separator is written between every pair of elements.
        "join" => {
            let n = len(this);
            let parts = match this {
                Some(v) => weight(v, remaining()),
                None => 0,
            };
            parts.saturating_add(n.saturating_mul(text(len(args.first()) as usize)))
        }
        // Every element compared with every element kept.
        "distinct" => len(this).saturating_mul(len(this)) / 4,
        "sets.contains" | "sets.equivalent" | "sets.intersects" => {
            len(args.first())
                .saturating_mul(len(args.get(1)))
                .saturating_mul(2)
                / 4
        }
        // A precision (`%.N`) writes N digits.
        "format" => precisions(&string(this)),
        _ => 1,
    }
}

/// Units for the digits `%.N` directives in a format string write.
fn precisions(format: &str) -> u64 {
    let mut total = 1u64;
    let mut rest = format;
    while let Some(at) = rest.find("%.") {
        rest = &rest[at + 2..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        // Past u64, the interpreter refuses the number itself.
        let n: u64 = rest[..digits].parse().unwrap_or(0);
        total = total.saturating_add(text(n.min(usize::MAX as u64) as usize));
        rest = &rest[digits..];
    }
    total
}

/// Adds the metering functions to a context.
pub(crate) fn register(ctx: &mut kube_cel::cel::Context<'_>) {
    ctx.add_function(CHARGE, charge);
    ctx.add_function(RANGE, range);
    ctx.add_function(GUARD, guard);
    ctx.add_function(READ, read);
}
