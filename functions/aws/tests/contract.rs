//! The store contract suite (the one the embedded store passes) against DynamoDB on moto.

mod common;

use std::sync::Arc;

use tocsin_core::store::Store;

tocsin_core::store_contract_tests!((Arc::new(common::store().await) as Arc<dyn Store>, ()));
