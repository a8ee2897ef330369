//! Compiling and evaluating policies.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube_cel::{KubeCelExt, cel};

use crate::inputs::Inputs;

mod cost;
mod meter;
mod reads;
mod shape;
mod supported;
mod text;
mod variables;
mod workers;

pub use variables::Variables;

use workers::Workers;

/// What a denying policy does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    Deny,
    Warn,
}

/// One rule as written in a LoadBalancerPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSource {
    pub name: String,
    pub expression: String,
    pub message: Option<String>,
    pub message_expression: Option<String>,
}

/// A LoadBalancerPolicy as the engine needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySource {
    pub name: String,
    /// `metadata.generation`: the compile cache key.
    pub generation: i64,
    pub action: Action,
    pub rules: Vec<RuleSource>,
}

/// Bounds on work.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest expression accepted, in bytes.
    pub max_expression: usize,
    /// Largest input (labels, annotations, addresses) evaluated, in bytes.
    pub max_input: usize,
    /// Longest one rule may run.
    pub max_time: Duration,
    /// Longest one expression may take to compile.
    pub max_compile_time: Duration,
    /// Deepest bracket nesting accepted: the parser recurses per level.
    pub max_nesting: usize,
    /// Deepest nesting of comprehensions (`all`, `exists`, `map`, ...).
    pub max_comprehension_depth: usize,
    /// Largest input a rule with one level of comprehension may see and
    /// still run on the caller's thread (no time limit needed).
    pub max_inline_input: usize,
    /// Evaluation threads.
    pub threads: usize,
    /// Rules allowed to keep running past `max_time` before evaluation is
    /// refused outright (a rule past its time stops at its next metered
    /// step; one call of the interpreter's cannot be cut short).
    pub max_runaway: usize,
    /// Work one evaluation may do, in units of one value built (a number,
    /// a list element, a map entry) or 32 bytes of text, each comprehension
    /// iteration one more (`engine::cost`).
    pub max_cost: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_expression: 4096,
            max_input: 256 * 1024,
            max_time: Duration::from_millis(100),
            max_compile_time: Duration::from_secs(2),
            max_nesting: 24,
            max_comprehension_depth: 2,
            max_inline_input: 16 * 1024,
            threads: 2,
            max_runaway: 4,
            // Spent in 25–75 ms (release build, a loaded 2-core machine)
            // with at most ~10 MB built: the binding bound before the time
            // limit, and the only one on the caller's thread.
            max_cost: 100_000,
        }
    }
}

/// A rule that does not compile: names the policy and rule, with position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("LoadBalancerPolicy {policy} rule {rule}: {message}")]
pub struct CompileError {
    pub policy: String,
    pub rule: String,
    pub message: String,
}

struct CompiledRule {
    source: RuleSource,
    program: Compiled,
    message_program: Option<Compiled>,
}

/// A compiled expression, and whether it may run on the caller's thread.
struct Compiled {
    /// The parsed rule, metered (`engine::meter`).
    program: Arc<cel::IdedExpr>,
    /// Deepest comprehension nesting. With none, evaluation time is linear
    /// in the (bounded) expression and input sizes; with one level over
    /// small inputs, nearly so. Such rules run on the caller's thread,
    /// skipping the hand-off to a worker — most of the cost of a simple rule.
    depth: usize,
}

/// A policy whose rules all compiled.
pub struct CompiledPolicy {
    pub name: String,
    pub generation: i64,
    pub action: Action,
    rules: Vec<CompiledRule>,
}

impl CompiledPolicy {
    /// How many rules it has.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("name", &self.name)
            .field("generation", &self.generation)
            .field(
                "rules",
                &self
                    .rules
                    .iter()
                    .map(|r| r.source.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The outcome of evaluating one policy against one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refused, or admitted with a warning when the policy's action is Warn.
    Refuse {
        action: Action,
        policy: String,
        rule: String,
        message: String,
    },
}

/// What a worker hands back.
enum Work {
    Compiled(Result<cel::IdedExpr, String>),
    Value(Result<cel::Value, String>),
}

/// Compiles policies (cached by name and generation) and evaluates them.
pub struct Engine {
    limits: Limits,
    cache: Mutex<HashMap<String, Arc<CompiledPolicy>>>,
    workers: Workers<Work>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Limits::default())
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(limits: Limits) -> Self {
        Engine {
            limits,
            cache: Mutex::new(HashMap::new()),
            workers: Workers::new(limits.threads, limits.max_runaway),
        }
    }

    /// Compiles `src`, or returns the cached result for its generation.
    pub fn compile(&self, src: &PolicySource) -> Result<Arc<CompiledPolicy>, CompileError> {
        if let Ok(cache) = self.cache.lock()
            && let Some(c) = cache
                .get(&src.name)
                .filter(|c| c.generation == src.generation)
        {
            return Ok(c.clone());
        }
        let err = |rule: &str, message: String| CompileError {
            policy: src.name.clone(),
            rule: rule.to_string(),
            message,
        };
        let mut rules = Vec::new();
        for r in &src.rules {
            let program = self
                .compile_one(&r.expression)
                .map_err(|m| err(&r.name, m))?;
            let message_program = match &r.message_expression {
                Some(e) => Some(
                    self.compile_one(e)
                        .map_err(|m| err(&r.name, format!("messageExpression: {m}")))?,
                ),
                None => None,
            };
            rules.push(CompiledRule {
                source: r.clone(),
                program,
                message_program,
            });
        }
        let compiled = Arc::new(CompiledPolicy {
            name: src.name.clone(),
            generation: src.generation,
            action: src.action,
            rules,
        });
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(src.name.clone(), compiled.clone());
        }
        Ok(compiled)
    }

    /// Forgets a deleted policy.
    pub fn forget(&self, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(name);
        }
    }

    fn compile_one(&self, expr: &str) -> Result<Compiled, String> {
        if expr.len() > self.limits.max_expression {
            return Err(format!(
                "expression is {} bytes; the limit is {}",
                expr.len(),
                self.limits.max_expression
            ));
        }
        let comprehensions = shape::check(
            expr,
            self.limits.max_nesting,
            self.limits.max_comprehension_depth,
        )?;
        // The parser is third-party code fed user input: it runs on a worker
        // (large stack, time limit, panics contained).
        let owned = expr.to_string();
        let work = self.workers.run(self.limits.max_compile_time, move || {
            // The walk runs here too: it recurses once per AST level.
            Work::Compiled(
                cel::Program::compile(&owned)
                    .map_err(|e| text::parse_error(&e, &owned))
                    .and_then(|p| match supported::unsupported(p.expression()) {
                        Some(why) => Err(why),
                        None => Ok(meter::meter(p.expression().clone())),
                    }),
            )
        });
        match work {
            Ok(Work::Compiled(r)) => r.map(|p| Compiled {
                program: Arc::new(p),
                depth: comprehensions,
            }),
            Ok(Work::Value(_)) => Err("internal: a compile returned a value".into()),
            Err(e) if e.contains("failed") => {
                Err("the CEL parser failed on this expression; simplify it".into())
            }
            Err(e) => Err(e),
        }
    }

    /// Evaluates every rule of `policy`; the first that does not return true
    /// refuses the claim. For several policies on one claim, convert the
    /// inputs once ([`Variables::new`]) and call [`Engine::judge`].
    pub fn evaluate(&self, policy: &CompiledPolicy, inputs: &Inputs) -> Verdict {
        self.judge(policy, &Variables::new(inputs))
    }

    /// [`Engine::evaluate`] on inputs already converted.
    pub fn judge(&self, policy: &CompiledPolicy, inputs: &Variables) -> Verdict {
        let refuse = |rule: &str, message: String| Verdict::Refuse {
            action: policy.action,
            policy: policy.name.clone(),
            rule: rule.to_string(),
            message: text::bounded(message),
        };
        if inputs.size() > self.limits.max_input {
            return refuse(
                "-",
                format!(
                    "inputs are {} bytes, over the {}-byte limit",
                    inputs.size(),
                    self.limits.max_input
                ),
            );
        }
        for rule in &policy.rules {
            match self.run(&rule.program, inputs) {
                Ok(cel::Value::Bool(true)) => continue,
                Ok(cel::Value::Bool(false)) => {
                    let message = self.message(rule, inputs);
                    return refuse(&rule.source.name, message);
                }
                Ok(other) => {
                    // Bounded while formatted: the value may be large.
                    return refuse(
                        &rule.source.name,
                        text::bounded(format_args!("expression returned {other:?}, not a bool")),
                    );
                }
                Err(e) => return refuse(&rule.source.name, format!("evaluation error: {e}")),
            }
        }
        Verdict::Allow
    }

    fn message(&self, rule: &CompiledRule, inputs: &Variables) -> String {
        if let Some(p) = &rule.message_program
            && let Ok(cel::Value::String(s)) = self.run(p, inputs)
        {
            return s.to_string();
        }
        // Bounded where the refusal is built.
        rule.source
            .message
            .clone()
            .unwrap_or_else(|| format!("failed rule: {}", rule.source.expression))
    }

    /// Runs a program, containing panics: inline when it cannot loop, else
    /// on a worker under the time limit.
    fn run(&self, compiled: &Compiled, inputs: &Variables) -> Result<cel::Value, String> {
        let inline = compiled.depth == 0
            || (compiled.depth == 1 && inputs.size() <= self.limits.max_inline_input);
        let limits = self.limits;
        if inline {
            // Bounded by cost alone: a wall-clock limit would refuse a
            // simple rule whenever the process is starved of CPU.
            return catch_unwind(AssertUnwindSafe(|| {
                execute(&compiled.program, inputs, &limits, None)
            }))
            .unwrap_or_else(|_| Err("the CEL interpreter failed on this rule".into()));
        }
        let program = compiled.program.clone();
        let inputs = inputs.clone();
        let work = self.workers.run(self.limits.max_time, move || {
            Work::Value(execute(&program, &inputs, &limits, Some(limits.max_time)))
        });
        match work {
            Ok(Work::Value(r)) => r,
            Ok(Work::Compiled(_)) => Err("internal: an evaluation returned a program".into()),
            Err(e) => Err(e),
        }
    }
}

thread_local! {
    // The standard library plus Kubernetes' extensions and the meter's
    // functions, registered once per thread: registering them is most of
    // the cost of an evaluation.
    static BASE: cel::Context<'static> = {
        let mut ctx = cel::Context::default().with_all();
        cost::register(&mut ctx);
        ctx
    };
}

fn execute(
    program: &cel::IdedExpr,
    inputs: &Variables,
    limits: &Limits,
    time: Option<Duration>,
) -> Result<cel::Value, String> {
    BASE.with(|base| execute_in(base, program, inputs, limits, time))
}

fn execute_in(
    base: &cel::Context<'static>,
    program: &cel::IdedExpr,
    inputs: &Variables,
    limits: &Limits,
    time: Option<Duration>,
) -> Result<cel::Value, String> {
    let mut ctx = base.new_inner_scope();
    inputs.bind(&mut ctx)?;
    match cost::metered(limits.max_cost, time, inputs.reads(), || {
        cel::Value::resolve(program, &ctx)
    }) {
        Ok(result) => result.map_err(text::bounded),
        Err(cost::Spent::Cost) => Err(format!(
            "rule exceeded its cost budget of {} units (a value built or 32 bytes of text, an iteration); simplify it",
            limits.max_cost
        )),
        Err(cost::Spent::Time) => Err(format!(
            "rule took longer than {:?}; simplify it",
            limits.max_time
        )),
    }
}

#[cfg(test)]
mod tests;
