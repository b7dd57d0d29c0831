//! Tocsin's alert rules language.
//!
//! Rule files (a pest grammar, checked with diagnostics and compiled to the wire
//! [`tocsin_core::model::AlertConfig`]) are built on top of the model and engine in
//! `tocsin-core`; the crate exists now so that the workspace has the layout the design
//! fixes, and so that the model it will compile to lives where it can reach it.
