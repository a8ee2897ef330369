//! Constructs the CEL interpreter parses but cannot evaluate (it panics on
//! them: message construction `Type{field: value}` is "not yet
//! implemented"). Refused when a rule compiles, with a message that names
//! the construct, rather than failing every evaluation later.

use kube_cel::cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// The first construct in `e` the interpreter cannot evaluate, if any.
pub(crate) fn unsupported(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Struct(s) => Some(format!(
            "message construction ({}{{…}}) is not supported; use a map literal ({{…}})",
            if s.type_name.is_empty() {
                "T"
            } else {
                &s.type_name
            }
        )),
        Expr::Unspecified => Some("an empty expression is not supported".into()),
        Expr::Ident(_) | Expr::Literal(_) => None,
        Expr::Select(s) => unsupported(&s.operand),
        Expr::Call(c) => c
            .target
            .as_deref()
            .and_then(unsupported)
            .or_else(|| c.args.iter().find_map(unsupported)),
        Expr::List(l) => l.elements.iter().find_map(unsupported),
        Expr::Map(m) => m.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(me) => unsupported(&me.key).or_else(|| unsupported(&me.value)),
            EntryExpr::StructField(_) => {
                Some("a message field in a map literal is not supported".into())
            }
        }),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .find_map(unsupported),
    }
}
