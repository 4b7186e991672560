//! The signed endpoints Answers blocks and Flow elements call: the path reads top-down in `invoke`
//! (verified request → account settings → inputs → partner request → partner answer → mapped outputs).

pub mod answer;
pub mod calls;
pub mod functions;
pub mod inputs;
pub mod invoke;
pub mod mapping;
pub mod request;
pub mod signature;
