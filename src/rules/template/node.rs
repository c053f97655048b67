//! The syntax tree the parser builds and execution walks.
//!
//! Variables are already resolved to numbered slots, so execution never looks a name up. Nodes
//! print as Go prints them in `executing "…" at <…>` messages.

use std::fmt;

use super::funcs::Func;

/// One element of a list of text and actions.
#[derive(Clone, Debug)]
pub(super) enum Node {
    /// A byte range of the source.
    Text {
        start: usize,
        end: usize,
    },
    Action(Pipe),
    If(Box<Control>),
    With(Box<Control>),
    Range(Box<Control>),
    Break,
    Continue,
}

/// An `if`, `with` or `range` with its bodies.
#[derive(Clone, Debug)]
pub(super) struct Control {
    pub(super) pipe: Pipe,
    pub(super) list: Vec<Node>,
    pub(super) els: Option<Vec<Node>>,
    /// Variable slots declared anywhere inside; cleared when the structure ends.
    pub(super) scope: (usize, usize),
    /// Slots declared inside the body; cleared after each range iteration.
    pub(super) body: (usize, usize),
}

/// A pipeline: optional declarations, then commands joined by `|`.
#[derive(Clone, Debug)]
pub(super) struct Pipe {
    pub(super) pos: usize,
    pub(super) decls: Vec<Decl>,
    pub(super) cmds: Vec<Cmd>,
}

/// A variable that a pipeline declares (`:=`) or assigns (`=`).
#[derive(Clone, Debug)]
pub(super) struct Decl {
    pub(super) name: String,
    pub(super) slot: usize,
    /// An assignment to a variable that was never declared (an exec error in Go).
    pub(super) undefined: bool,
}

/// One stage of a pipeline: a function or value and its arguments.
#[derive(Clone, Debug)]
pub(super) struct Cmd {
    pub(super) args: Vec<Arg>,
}

/// An operand; `pos` is its byte offset, for error locations.
#[derive(Clone, Debug)]
pub(super) enum Arg {
    Field {
        pos: usize,
        names: Vec<String>,
    },
    Var {
        pos: usize,
        name: String,
        slot: usize,
        names: Vec<String>,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Bool {
        pos: usize,
        val: bool,
    },
    Int {
        pos: usize,
        val: i64,
        text: String,
    },
    Str {
        pos: usize,
        val: String,
        text: String,
    },
    Func {
        pos: usize,
        func: Func,
    },
    Pipe(Box<Pipe>),
    Chain {
        pos: usize,
        node: Box<Arg>,
        names: Vec<String>,
    },
}

impl Arg {
    pub(super) fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Var { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Int { pos, .. }
            | Arg::Str { pos, .. }
            | Arg::Func { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { names, .. } => {
                for n in names {
                    write!(f, ".{n}")?;
                }
                Ok(())
            }
            Arg::Var { name, names, .. } => {
                f.write_str(name)?;
                for n in names {
                    write!(f, ".{n}")?;
                }
                Ok(())
            }
            Arg::Dot { .. } => f.write_str("."),
            Arg::Nil { .. } => f.write_str("nil"),
            Arg::Bool { val, .. } => write!(f, "{val}"),
            Arg::Int { text, .. } | Arg::Str { text, .. } => f.write_str(text),
            Arg::Func { func, .. } => f.write_str(func.name()),
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Chain { node, names, .. } => {
                write!(f, "{node}")?;
                for n in names {
                    write!(f, ".{n}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decls.is_empty() {
            for (i, d) in self.decls.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(&d.name)?;
            }
            f.write_str(" := ")?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            for (j, a) in c.args.iter().enumerate() {
                if j > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}
