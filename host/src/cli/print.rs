//! The one printer of every listing command: JSON lines with `--json`, else
//! a table whose columns each row type describes once ([`Table`]).

use anyhow::Result;
use serde::Serialize;
use std::io::Write;

/// A column of a table: its header, width and alignment. The last column
/// of a row is printed as it is, without padding.
pub struct Column {
    /// The header.
    pub name: &'static str,
    /// The padded width.
    pub width: usize,
    /// Right-aligned (numbers).
    pub right: bool,
}

/// A left-aligned column.
pub const fn left(name: &'static str, width: usize) -> Column {
    Column {
        name,
        width,
        right: false,
    }
}

/// A right-aligned column.
pub const fn right(name: &'static str, width: usize) -> Column {
    Column {
        name,
        width,
        right: true,
    }
}

/// A row type that prints as a table row.
pub trait Table: Serialize {
    /// The columns, in order.
    const COLUMNS: &'static [Column];
    /// The row's cells, one per column.
    fn cells(&self) -> Vec<String>;
}

/// Prints listings to stdout as JSON lines or as a table.
pub struct Printer {
    json: bool,
}

impl Printer {
    /// A printer for `--json` (true) or tables.
    pub fn new(json: bool) -> Printer {
        Printer { json }
    }

    /// Print `rows`: one JSON object per line, or a header and a line per row.
    pub fn list<R: Table>(&self, rows: &[R]) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if self.json {
            for row in rows {
                writeln!(out, "{}", serde_json::to_string(row)?)?;
            }
            return Ok(());
        }
        let header: Vec<String> = R::COLUMNS.iter().map(|c| c.name.to_string()).collect();
        writeln!(out, "{}", line(R::COLUMNS, &header))?;
        for row in rows {
            writeln!(out, "{}", line(R::COLUMNS, &row.cells()))?;
        }
        Ok(())
    }

    /// Print one value: pretty JSON, or `text` of it.
    pub fn one<T: Serialize>(&self, value: &T, text: impl FnOnce(&T) -> String) -> Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
        } else {
            write!(out, "{}", text(value))?;
        }
        Ok(())
    }
}

/// One table line: every cell padded to its column, the last as it is.
fn line(columns: &[Column], cells: &[String]) -> String {
    let last = cells.len().saturating_sub(1);
    cells
        .iter()
        .zip(columns)
        .enumerate()
        .map(|(i, (cell, column))| match (i == last, column.right) {
            (true, _) => cell.clone(),
            (false, true) => format!("{cell:>w$}", w = column.width),
            (false, false) => format!("{cell:<w$}", w = column.width),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Pet {
        name: &'static str,
        legs: u32,
        note: &'static str,
    }

    impl Table for Pet {
        const COLUMNS: &'static [Column] = &[left("NAME", 6), right("LEGS", 4), left("NOTE", 0)];
        fn cells(&self) -> Vec<String> {
            vec![self.name.into(), self.legs.to_string(), self.note.into()]
        }
    }

    #[test]
    fn cells_are_padded_but_the_last() {
        let cat = Pet {
            name: "cat",
            legs: 4,
            note: "naps a lot",
        };
        assert_eq!(line(Pet::COLUMNS, &cat.cells()), "cat       4 naps a lot");
        let header: Vec<String> = Pet::COLUMNS.iter().map(|c| c.name.into()).collect();
        assert_eq!(line(Pet::COLUMNS, &header), "NAME   LEGS NOTE");
    }
}
