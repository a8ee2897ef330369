//! A claim's inputs as CEL values, converted once per claim: converting
//! them was most of an evaluation's cost, and a claim is judged by every
//! rule of every policy that selects its pool.

use std::sync::Arc;

use kube_cel::cel;

use super::reads::{self, Weights};
use super::text;
use crate::inputs::Inputs;

/// The variables every rule of one claim sees.
#[derive(Clone)]
pub struct Variables {
    /// `namespace`, `service`, `pool`, `request`; or why they could not be
    /// converted (a refusal of every rule).
    values: Result<Arc<[(&'static str, cel::Value); 4]>, String>,
    reads: Weights,
    size: usize,
}

impl Variables {
    /// Converts `inputs` (straight into CEL values: through serde_json a
    /// non-negative integer such as a port would arrive as `uint`, where
    /// Kubernetes' CEL has `int`).
    pub fn new(inputs: &Inputs) -> Self {
        let convert = || -> Result<_, cel::SerializationError> {
            Ok(Arc::new([
                ("namespace", cel::to_value(&inputs.namespace)?),
                ("service", cel::to_value(&inputs.service)?),
                ("pool", cel::to_value(&inputs.pool)?),
                ("request", cel::to_value(&inputs.request)?),
            ]))
        };
        Variables {
            values: convert().map_err(text::bounded),
            reads: reads::weights(inputs),
            size: inputs.size(),
        }
    }

    /// The inputs' size in bytes (`Inputs::size`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// What reading each input costs (`super::reads`).
    pub(crate) fn reads(&self) -> Weights {
        self.reads
    }

    /// Adds the variables to a rule's context.
    pub(crate) fn bind(&self, ctx: &mut cel::Context<'_>) -> Result<(), String> {
        let values = self.values.as_ref().map_err(Clone::clone)?;
        for (name, value) in values.iter() {
            // Cheap: the value's lists and maps are shared, not copied.
            ctx.add_variable_from_value(*name, value.clone());
        }
        Ok(())
    }
}

impl std::fmt::Debug for Variables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variables")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}
