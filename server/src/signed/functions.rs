//! A function of the app definition, prepared for serving: its partner request and outputs compiled once, so
//! the signed path only fills in values.

use crate::ops::metrics::{FunctionMetrics, Metrics};
use crate::partner::RequestPlan;
use crate::signed::answer::AnswerShape;
use crate::signed::mapping::{answer_shape, OutputPlan};
use app::definition::{AppDefinition, Function};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct FunctionPlan {
    pub function: Function,
    pub request: RequestPlan,
    pub outputs: Vec<OutputPlan>,
    /// The parts of the partner's answer the outputs read; the rest is skipped unbuilt.
    pub answer: AnswerShape,
    pub deadline: Duration,
    pub metrics: FunctionMetrics,
}

pub fn compile(
    definition: &AppDefinition,
    metrics: &Metrics,
) -> Result<Vec<Arc<FunctionPlan>>, String> {
    definition
        .functions
        .iter()
        .map(|function| {
            let place = |e: String| format!("function `{}`: {e}", function.name);
            let mut outputs: Vec<OutputPlan> = function
                .outputs
                .iter()
                .map(OutputPlan::compile)
                .collect::<Result<_, _>>()
                .map_err(place)?;
            Ok(Arc::new(FunctionPlan {
                request: RequestPlan::compile(
                    &definition.partner,
                    &function.request,
                    &function
                        .inputs
                        .iter()
                        .filter(|input| input.allow_slash)
                        .map(|input| input.name.as_str())
                        .collect::<Vec<_>>(),
                )
                .map_err(place)?,
                answer: answer_shape(&mut outputs),
                outputs,
                deadline: Duration::from_millis(function.timeout_ms(&definition.partner)),
                metrics: metrics.function(&function.name),
                function: function.clone(),
            }))
        })
        .collect()
}
