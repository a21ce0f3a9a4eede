mod query;
mod token;

pub use query::*;
pub use token::*;
