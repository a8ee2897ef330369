//! Rewrites a parsed rule so that evaluating it charges the cost budget
//! (`super::cost`): each call that builds a value is wrapped in
//! `@barelb.charge`, a call that can cost more than what it returns in
//! `@barelb.guard`, each list or map literal in `@barelb.charge`, each
//! read of an input behind `@barelb.read` and each comprehension's range
//! in `@barelb.range`. Calls that only test or pick among values already
//! paid for are left as they are.

use kube_cel::cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr, ListExpr, LiteralValue,
    MapEntryExpr, MapExpr, SelectExpr, operators,
};

use super::cost::{CHARGE, GUARD, RANGE, READ};
use super::reads;

/// Calls not wrapped: lazy in their arguments (`&&`, `||`, `?:`, the
/// error-absorbing test of `all`/`exists`), or returning a bool, a number
/// or a value their arguments already hold. Their arguments are metered.
const UNCHARGED: [&str; 16] = [
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::CONDITIONAL,
    operators::NOT_STRICTLY_FALSE,
    operators::OPT_SELECT,
    operators::OPT_INDEX,
    operators::INDEX,
    operators::LOGICAL_NOT,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::LESS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::GREATER_EQUALS,
    operators::IN,
    "size",
];

/// Calls whose result or running time can grow faster than their
/// arguments: charged before they run (`super::cost::before`).
const GUARDED: [&str; 8] = [
    "lists.range",
    "replace",
    "join",
    "distinct",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
    "format",
];

/// `e`, metered. Recurses once per AST level, like the parser: it runs
/// where the parser does (a worker with a large stack).
pub(crate) fn meter(e: IdedExpr) -> IdedExpr {
    let IdedExpr { id, expr } = e;
    let expr = match expr {
        Expr::Call(c) => return meter_call(id, c),
        Expr::Comprehension(c) => {
            let c = *c;
            Expr::Comprehension(Box::new(ComprehensionExpr {
                iter_range: call(RANGE, None, vec![meter(c.iter_range)]),
                accu_init: meter(c.accu_init),
                loop_cond: meter(c.loop_cond),
                loop_step: meter(c.loop_step),
                result: meter(c.result),
                ..c
            }))
        }
        Expr::List(l) => {
            let list = Expr::List(ListExpr {
                elements: l.elements.into_iter().map(meter).collect(),
                ..l
            });
            return call(CHARGE, None, vec![IdedExpr { id, expr: list }]);
        }
        Expr::Map(m) => {
            let map = Expr::Map(MapExpr {
                entries: m.entries.into_iter().map(meter_entry).collect(),
            });
            return call(CHARGE, None, vec![IdedExpr { id, expr: map }]);
        }
        // Reading an input copies it (`super::reads`); other fields come
        // from values already charged. A presence test returns a bool.
        Expr::Select(s) => {
            let read = match &s.operand.expr {
                Expr::Ident(root) if !s.test => reads::index(root, Some(&s.field)),
                _ => None,
            };
            let operand = match s.operand.expr {
                Expr::Ident(_) => *s.operand,
                _ => meter(*s.operand),
            };
            let select = IdedExpr {
                id,
                expr: Expr::Select(SelectExpr {
                    operand: Box::new(operand),
                    ..s
                }),
            };
            return match read {
                Some(i) => charged_read(i, select),
                None => select,
            };
        }
        Expr::Ident(name) => {
            let read = reads::index(&name, None);
            let ident = IdedExpr {
                id,
                expr: Expr::Ident(name),
            };
            return match read {
                Some(i) => charged_read(i, ident),
                None => ident,
            };
        }
        other => other,
    };
    IdedExpr { id, expr }
}

/// `@barelb.read(i) ? <read> : null`: charged, then read.
fn charged_read(i: usize, read: IdedExpr) -> IdedExpr {
    let index = IdedExpr {
        id: 0,
        expr: Expr::Literal(LiteralValue::Int((i as i64).into())),
    };
    call(
        operators::CONDITIONAL,
        None,
        vec![call(READ, None, vec![index]), read, null()],
    )
}

fn null() -> IdedExpr {
    IdedExpr {
        id: 0,
        expr: Expr::Literal(LiteralValue::Null),
    }
}

fn meter_call(id: u64, c: CallExpr) -> IdedExpr {
    let name = qualified(&c);
    let inner = IdedExpr {
        id,
        expr: Expr::Call(CallExpr {
            func_name: c.func_name,
            target: c.target.map(|t| Box::new(meter(*t))),
            args: c.args.into_iter().map(meter).collect(),
        }),
    };
    if UNCHARGED.contains(&name.as_str()) {
        inner
    } else if GUARDED.contains(&name.as_str()) {
        call(GUARD, None, vec![inner])
    } else {
        call(CHARGE, None, vec![inner])
    }
}

fn meter_entry(e: IdedEntryExpr) -> IdedEntryExpr {
    let expr = match e.expr {
        EntryExpr::MapEntry(me) => EntryExpr::MapEntry(MapEntryExpr {
            key: meter(me.key),
            value: meter(me.value),
            optional: me.optional,
        }),
        // Refused before metering (`super::supported`).
        other => other,
    };
    IdedEntryExpr { id: e.id, expr }
}

/// The name a call is known by: `lists.range` for `lists.range(n)` (the
/// parser makes `lists` its target), else the function's own name.
pub(crate) fn qualified(c: &CallExpr) -> String {
    if let Some(t) = &c.target
        && let Expr::Ident(prefix) = &t.expr
    {
        let name = format!("{prefix}.{}", c.func_name);
        // As in the interpreter, a registered qualified name wins over a
        // variable of the prefix's name; only the guarded ones matter here.
        if GUARDED.contains(&name.as_str()) {
            return name;
        }
    }
    c.func_name.clone()
}

/// A call of `name` (ids are not used when evaluating).
pub(crate) fn call(name: &str, target: Option<Box<IdedExpr>>, args: Vec<IdedExpr>) -> IdedExpr {
    IdedExpr {
        id: 0,
        expr: Expr::Call(CallExpr {
            func_name: name.to_string(),
            target,
            args,
        }),
    }
}

/// A reference to the variable `name`.
pub(crate) fn ident(name: &str) -> IdedExpr {
    IdedExpr {
        id: 0,
        expr: Expr::Ident(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_cel::cel::Program;

    fn names(e: &IdedExpr, out: &mut Vec<String>) {
        match &e.expr {
            Expr::Call(c) => {
                out.push(c.func_name.clone());
                if let Some(t) = &c.target {
                    names(t, out);
                }
                c.args.iter().for_each(|a| names(a, out));
            }
            Expr::Comprehension(c) => {
                for part in [&c.iter_range, &c.accu_init, &c.loop_step, &c.result] {
                    names(part, out);
                }
            }
            Expr::List(l) => l.elements.iter().for_each(|a| names(a, out)),
            Expr::Select(s) => names(&s.operand, out),
            _ => {}
        }
    }

    fn metered(rule: &str) -> Vec<String> {
        let p = Program::compile(rule).unwrap();
        let mut out = Vec::new();
        names(&meter(p.expression().clone()), &mut out);
        out
    }

    #[test]
    fn builders_are_charged_tests_are_not() {
        // An input read is charged in the condition of a `?:`.
        assert_eq!(
            metered("namespace.labels['a'] == 'b'"),
            ["_==_", "_[_]", "_?_:_", READ]
        );
        assert_eq!(metered("has(service.x)"), Vec::<String>::new());
        assert_eq!(
            metered("'a' + namespace.name"),
            [CHARGE, "_+_", "_?_:_", READ]
        );
        assert_eq!(metered("[1, 2]"), [CHARGE]);
    }

    #[test]
    fn ranges_are_charged_and_guarded_calls_guarded() {
        // range: its target `lists` is an identifier; accu_init `[]`;
        // loop_step `accu + [x.replace(…)]`.
        assert_eq!(
            metered("lists.range(3).map(x, x.replace('', 'b'))"),
            [
                RANGE, GUARD, "range", CHARGE, CHARGE, "_+_", CHARGE, GUARD, "replace"
            ]
        );
    }
}
