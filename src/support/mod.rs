//! Support code that the story of dsys leans on but does not tell: a first reading may skip
//! this folder.

pub mod limits;
