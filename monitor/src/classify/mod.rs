//! Stage 6: classification. Validates every chain and turns sessions into findings: what a
//! receiving or sending rule would do with this session, today and at a future date.

pub mod validate;
