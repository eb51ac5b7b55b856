//! A static check of template sources for the costs minijinja's fuel does not see.
//!
//! minijinja 3.1 charges fuel for instructions, strings and output, but not for two things a
//! hostile template can use to hang or exhaust the host before any fuel runs out:
//! - **list joins**: `a + b` on two lists stays lazy and free; once 32 joins are nested it copies
//!   the whole list without fuel, so `l = l + l` in a loop (or 33 times in a row) materialises
//!   2³³ items. `chain` flattens the same way, and a constant `[x] * n` is folded when the
//!   template compiles, before any budget applies;
//! - **stringifying shared containers**: `[a, a, …]` of `[b, b, …]` of … is small in memory but
//!   its text grows as the product of the fan-outs, and `~` or a string filter builds that text
//!   whole before charging it.
//!
//! No hook of the environment reaches these operators, so templates are checked before they
//! compile. First [`check_structure`] caps how deep the syntax tree can nest (minijinja's
//! compiler recurses once per link of a chain such as `a + b + …`, and a long one overflows
//! the stack). Every expression gets a [`Shape`]: never a container, a container whose text is
//! bounded by the render's input and the template's own size, or a container the template built
//! from references (unbounded). A template is refused when
//! 1. a list join, repeat, `chain` or `zip` runs in a loop, a loop filter or a macro, or the
//!    product of the growth of all of them exceeds [`MAX_LIST_GROWTH`], or a repeat count is
//!    not a constant (appending a literal, `acc + [item]`, grows by a fixed count per run and
//!    stays allowed: fuel bounds the runs);
//! 2. an unbounded container is an operand of `~` or of a filter that turns it into text
//!    (`string`, `join`, `tojson`, printing and Python-style methods stay allowed: the
//!    environment charges their input in full before they run).
//!
//! Operands the check cannot type count as containers; real chat templates still pass, since
//! they join strings (with a literal or a token on one side), not lists. A refusal names the
//! line and the rule.

use minijinja::machinery::ast::{self, BinOpKind, CallArg, Expr, Stmt};
use minijinja::machinery::{parse, tokenize, Token};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::ValueKind;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// Largest factor by which list joins, repeats, `chain` and `zip` may multiply a template's
/// lists in one render (a join counts 2, `* n` counts n).
pub const MAX_LIST_GROWTH: u64 = 16;

/// What a value can cost when it is turned into text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    /// Never a container: a string, number, boolean, none, undefined or function.
    Scalar,
    /// Maybe a container, whose text is bounded by the render's input (the context data) and
    /// the template's constants.
    Bounded,
    /// Maybe a container built from references, whose text the check cannot bound.
    Unbounded,
}

impl Shape {
    fn is_container(self) -> bool {
        self != Shape::Scalar
    }
}

/// The render context a template is checked against: the shape of each variable it gets.
#[derive(Clone, Debug, Default)]
pub struct ContextShapes {
    shapes: HashMap<String, Shape>,
}

impl ContextShapes {
    /// Context with the given variables; any other name is undefined (a scalar) or a global.
    pub fn new<'a>(vars: impl IntoIterator<Item = (&'a str, Shape)>) -> Self {
        Self {
            shapes: vars
                .into_iter()
                .map(|(name, shape)| (name.to_string(), shape))
                .collect(),
        }
    }
}

/// A refusal: the template line and the rule it breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 1-based line of the offending expression.
    pub line: usize,
    /// What the expression does and why that is refused.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template line {}: {}", self.line, self.reason)
    }
}

/// Filters that return a scalar and read their input as text (refused on unbounded input).
const TEXT_FILTERS: &[&str] = &[
    "lower",
    "upper",
    "title",
    "capitalize",
    "replace",
    "trim",
    "format",
    "urlencode",
    "indent",
    "pprint",
    "safe",
    "escape",
    "e",
    "int",
    "float",
    "round",
    "abs",
    "wordcount",
    "truncate",
    "center",
    "striptags",
    "split",
    "lines",
];

/// Filters whose input the environment charges in full before they run (text out).
const CHARGED_TEXT_FILTERS: &[&str] = &["string", "join", "tojson"];

/// Filters that return a scalar without reading their input as text.
const COUNTING_FILTERS: &[&str] = &["length", "count", "bool"];

/// Filters whose result holds each input item at most once (its text is bounded as the input's).
const SHAPE_PRESERVING_FILTERS: &[&str] = &[
    "dictsort",
    "items",
    "reverse",
    "first",
    "last",
    "min",
    "max",
    "sort",
    "list",
    "batch",
    "slice",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "groupby",
    "unique",
    "attr",
    "default",
    "d",
];

/// `loop` attributes that are numbers or booleans.
const LOOP_SCALARS: &[&str] = &[
    "index",
    "index0",
    "revindex",
    "revindex0",
    "first",
    "last",
    "length",
    "depth",
    "depth0",
    "changed",
];

/// Python-style string methods that return lists (of parts of a charged string).
const SPLITTING_METHODS: &[&str] = &["split", "splitlines", "rsplit", "partition", "rpartition"];

/// Most tokens inside one `{{ … }}` or `{% … %}` tag (chat templates use a few dozen).
pub const MAX_TAG_TOKENS: usize = 1_000;

/// Most `elif` branches of one `if` (chat templates use a handful).
pub const MAX_ELIF_BRANCHES: usize = 1_000;

/// Rounds of binding inference before every bound name is taken as unbounded.
const MAX_BINDING_ROUNDS: usize = 16;

/// Checks `source` (parsed with `syntax`) against the rules of the module documentation, after
/// [`check_structure`]. A source that does not parse passes: compiling it reports the error.
pub fn check_template(
    source: &str,
    syntax: SyntaxConfig,
    context: &ContextShapes,
) -> Result<(), Refusal> {
    check_structure(source, syntax.clone())?;
    let Ok(root) = parse(source, "template", syntax) else {
        return Ok(());
    };
    let mut checker = Checker::new(context);
    checker.infer_bindings(&root);
    checker.check_stmt(&root, false)?;
    Ok(())
}

/// Bounds the depth of the syntax tree before anything parses it. minijinja's parser builds
/// chains (`a + b + …`, `x|f|f…`, `x.a.a…`, `elif` after `elif`) in a loop, one level per
/// link, and its compiler, constant folding and destructor then recurse once per level: a
/// 240 KB template of 60,000 `+ x` overflows the stack and aborts the host process, and
/// 30,000 take 11 s (folding is quadratic in the depth). Counting tokens with minijinja's own
/// lexer (a loop) caps every chain at [`MAX_TAG_TOKENS`] links and `elif` runs at
/// [`MAX_ELIF_BRANCHES`]; nested blocks and brackets are already capped by the parser.
pub fn check_structure(source: &str, syntax: SyntaxConfig) -> Result<(), Refusal> {
    let mut in_tag: Option<(usize, usize)> = None; // (tokens so far, first line)
    let mut after_block_start = false;
    let mut elifs: Vec<usize> = Vec::new();
    for token in tokenize(source, false, syntax) {
        // A lexer error is reported by the compiler.
        let Ok((token, span)) = token else {
            return Ok(());
        };
        let line = usize::from(span.start_line);
        match token {
            Token::VariableStart | Token::BlockStart => {
                in_tag = Some((0, line));
                after_block_start = matches!(token, Token::BlockStart);
                continue;
            }
            Token::VariableEnd | Token::BlockEnd => {
                in_tag = None;
                continue;
            }
            _ => {}
        }
        if let Some((count, first_line)) = in_tag.as_mut() {
            *count += 1;
            if *count > MAX_TAG_TOKENS {
                return Err(Refusal {
                    line: *first_line,
                    reason: format!(
                        "a tag of more than {MAX_TAG_TOKENS} tokens (expressions this long nest \
                         deeper than the template engine can compile safely)"
                    ),
                });
            }
        }
        if std::mem::take(&mut after_block_start) {
            match token {
                Token::Ident("if") => elifs.push(0),
                Token::Ident("endif") => {
                    elifs.pop();
                }
                Token::Ident("elif") => {
                    if let Some(n) = elifs.last_mut() {
                        *n += 1;
                        if *n > MAX_ELIF_BRANCHES {
                            return Err(Refusal {
                                line,
                                reason: format!(
                                    "an `if` with more than {MAX_ELIF_BRANCHES} `elif` branches"
                                ),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The shapes bound to names, computed to a fixed point before the check.
struct Checker<'c> {
    context: &'c ContextShapes,
    vars: HashMap<String, Shape>,
    attrs: HashMap<String, Shape>,
    /// Variables bound only to `namespace(…)` calls (their attributes live in `attrs`).
    namespaces: HashSet<String>,
    /// Variables bound to anything other than a `namespace(…)` call.
    not_namespaces: HashSet<String>,
    macros: HashSet<String>,
    growth: u64,
    changed: bool,
    memo: RefCell<HashMap<usize, Shape>>,
}

impl<'c> Checker<'c> {
    fn new(context: &'c ContextShapes) -> Self {
        Self {
            context,
            vars: HashMap::new(),
            attrs: HashMap::new(),
            namespaces: HashSet::new(),
            not_namespaces: HashSet::new(),
            macros: HashSet::new(),
            growth: 1,
            changed: false,
            memo: RefCell::new(HashMap::new()),
        }
    }

    /// Binds every assignment's shape to its names until nothing changes (shapes only rise,
    /// so this ends after at most three rounds per name).
    fn infer_bindings(&mut self, root: &Stmt<'_>) {
        for _ in 0..MAX_BINDING_ROUNDS {
            self.changed = false;
            self.memo.borrow_mut().clear();
            self.bind_stmt(root);
            if !self.changed {
                break;
            }
        }
        if self.changed {
            // Still rising (a long chain of names bound to each other): take the top shape
            // for every bound name rather than iterating once per link.
            self.vars.values_mut().for_each(|s| *s = Shape::Unbounded);
            self.attrs.values_mut().for_each(|s| *s = Shape::Unbounded);
        }
        for name in &self.not_namespaces {
            self.namespaces.remove(name);
        }
        self.memo.borrow_mut().clear();
    }

    fn bind_var(&mut self, name: &str, shape: Shape) {
        let entry = self.vars.entry(name.to_string()).or_insert(Shape::Scalar);
        if shape > *entry {
            *entry = shape;
            self.changed = true;
        }
    }

    fn bind_attr(&mut self, name: &str, shape: Shape) {
        let entry = self.attrs.entry(name.to_string()).or_insert(Shape::Scalar);
        if shape > *entry {
            *entry = shape;
            self.changed = true;
        }
    }

    /// Binds a target (a name, `ns.attr` or a tuple of names) to `shape`.
    fn bind_target(&mut self, target: &Expr<'_>, shape: Shape, value: Option<&Expr<'_>>) {
        match target {
            Expr::Var(v) => {
                let is_namespace = value.is_some_and(is_namespace_call);
                if is_namespace {
                    self.namespaces.insert(v.id.to_string());
                    if let Some(Expr::Call(call)) = value {
                        for arg in &call.args {
                            match arg {
                                CallArg::Kwarg(name, e) => {
                                    let s = self.shape(e);
                                    self.bind_attr(name, s);
                                }
                                _ => self.bind_attr("*", Shape::Unbounded),
                            }
                        }
                    }
                } else if !self.not_namespaces.contains(v.id) {
                    self.not_namespaces.insert(v.id.to_string());
                    self.changed = true;
                }
                self.bind_var(v.id, shape);
            }
            Expr::GetAttr(a) => self.bind_attr(a.name, shape),
            Expr::Tuple(t) => {
                for target in &t.items {
                    self.bind_target(target, shape, None);
                }
            }
            _ => {}
        }
    }

    fn bind_stmts(&mut self, stmts: &[Stmt<'_>]) {
        for stmt in stmts {
            self.bind_stmt(stmt);
        }
    }

    fn bind_stmt(&mut self, stmt: &Stmt<'_>) {
        match stmt {
            Stmt::Template(t) => self.bind_stmts(&t.children),
            Stmt::ForLoop(f) => {
                // An item's text is bounded as its container's (a string's items are characters).
                let item = self.shape(&f.iter);
                self.bind_target(&f.target, item, None);
                self.bind_stmts(&f.body);
                self.bind_stmts(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.bind_stmts(&i.true_body);
                self.bind_stmts(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                for (target, expr) in &w.assignments {
                    let s = self.shape(expr);
                    self.bind_target(target, s, Some(expr));
                }
                self.bind_stmts(&w.body);
            }
            Stmt::Set(s) => {
                let shape = self.shape(&s.expr);
                self.bind_target(&s.target, shape, Some(&s.expr));
            }
            Stmt::SetBlock(s) => {
                let shape = match &s.filter {
                    Some(f) => self.shape(f).max(Shape::Bounded),
                    None => Shape::Scalar,
                };
                self.bind_target(&s.target, shape, None);
                self.bind_stmts(&s.body);
            }
            Stmt::AutoEscape(a) => self.bind_stmts(&a.body),
            Stmt::FilterBlock(f) => self.bind_stmts(&f.body),
            Stmt::Block(b) => self.bind_stmts(&b.body),
            Stmt::Import(i) => self.bind_target(&i.name, Shape::Unbounded, None),
            Stmt::FromImport(i) => {
                for (name, alias) in &i.names {
                    self.bind_target(alias.as_ref().unwrap_or(name), Shape::Unbounded, None);
                }
            }
            Stmt::Macro(m) => {
                self.macros.insert(m.name.to_string());
                self.bind_macro(m);
            }
            Stmt::CallBlock(c) => self.bind_macro(&c.macro_decl),
            _ => {}
        }
    }

    fn bind_macro(&mut self, m: &ast::Macro<'_>) {
        for arg in &m.args {
            self.bind_target(arg, Shape::Unbounded, None);
        }
        self.bind_stmts(&m.body);
    }

    /// The shape of a variable: its bindings, else the context's, else a scalar (undefined,
    /// or a global function).
    fn var_shape(&self, name: &str) -> Shape {
        let bound = self.vars.get(name).copied();
        let given = self.context.shapes.get(name).copied();
        match (bound, given) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            // `loop.cycle(…)`, `loop.previtem` and the like return the loop's own values.
            (None, None) if name == "loop" => Shape::Unbounded,
            (None, None) => Shape::Scalar,
        }
    }

    fn attr_shape(&self, name: &str) -> Shape {
        let wildcard = self.attrs.get("*").copied().unwrap_or(Shape::Scalar);
        self.attrs
            .get(name)
            .copied()
            .unwrap_or(Shape::Scalar)
            .max(wildcard)
    }

    fn is_namespace_var(&self, expr: &Expr<'_>) -> bool {
        matches!(expr, Expr::Var(v) if self.namespaces.contains(v.id)
            && !self.not_namespaces.contains(v.id))
    }

    /// The shape of an expression's value, memoised per node (keyed by address) while the
    /// bindings stay the same, so checking a long chain costs its length, not its square.
    fn shape(&self, expr: &Expr<'_>) -> Shape {
        let key = expr as *const Expr<'_> as usize;
        if let Some(&shape) = self.memo.borrow().get(&key) {
            return shape;
        }
        let shape = self.shape_uncached(expr);
        self.memo.borrow_mut().insert(key, shape);
        shape
    }

    fn shape_uncached(&self, expr: &Expr<'_>) -> Shape {
        match expr {
            Expr::Var(v) => self.var_shape(v.id),
            Expr::Const(c) => match c.value.kind() {
                ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain => {
                    Shape::Bounded
                }
                _ => Shape::Scalar,
            },
            Expr::Slice(s) => self.shape(&s.expr),
            Expr::UnaryOp(_) | Expr::Compare(_) | Expr::Test(_) => Shape::Scalar,
            Expr::BinOp(b) => {
                let (l, r) = (self.shape(&b.left), self.shape(&b.right));
                match b.op {
                    BinOpKind::Add if l.is_container() && r.is_container() => Shape::Unbounded,
                    BinOpKind::Mul if l.is_container() || r.is_container() => Shape::Unbounded,
                    BinOpKind::ScAnd | BinOpKind::ScOr => l.max(r),
                    _ => Shape::Scalar,
                }
            }
            Expr::IfExpr(i) => {
                let other = i
                    .false_expr
                    .as_ref()
                    .map_or(Shape::Scalar, |e| self.shape(e));
                self.shape(&i.true_expr).max(other)
            }
            Expr::Filter(f) => self.filter_shape(f),
            Expr::GetAttr(a) => {
                if matches!(&a.expr, Expr::Var(v) if v.id == "loop" && !self.vars.contains_key("loop"))
                {
                    return if LOOP_SCALARS.contains(&a.name) {
                        Shape::Scalar
                    } else {
                        Shape::Unbounded
                    };
                }
                if self.is_namespace_var(&a.expr) {
                    return self.attr_shape(a.name);
                }
                self.shape(&a.expr)
            }
            Expr::GetItem(g) => {
                if self.is_namespace_var(&g.expr) {
                    if let Expr::Const(key) = &g.subscript_expr {
                        if let Some(name) = key.value.as_str() {
                            return self.attr_shape(name);
                        }
                    }
                    return Shape::Unbounded;
                }
                self.shape(&g.expr)
            }
            Expr::Call(c) => self.call_shape(c),
            // A literal of constants is bounded by the source; one of references is not.
            Expr::List(_) | Expr::Tuple(_) | Expr::Map(_) if is_constant(expr) => Shape::Bounded,
            Expr::List(_) | Expr::Tuple(_) | Expr::Map(_) => Shape::Unbounded,
        }
    }

    fn filter_shape(&self, f: &ast::Filter<'_>) -> Shape {
        let input = f.expr.as_ref().map_or(Shape::Scalar, |e| self.shape(e));
        let name = f.name;
        if TEXT_FILTERS.contains(&name) {
            return if name == "split" || name == "lines" {
                Shape::Bounded
            } else {
                Shape::Scalar
            };
        }
        if CHARGED_TEXT_FILTERS.contains(&name) || COUNTING_FILTERS.contains(&name) {
            return Shape::Scalar;
        }
        let args = f
            .args
            .iter()
            .map(|a| self.shape(call_arg_expr(a)))
            .max()
            .unwrap_or(Shape::Scalar);
        if name == "default" || name == "d" {
            return input.max(args);
        }
        if SHAPE_PRESERVING_FILTERS.contains(&name) || name == "map" {
            // A container argument (`fill_with=`, `default=`) may be repeated once per item.
            if args.is_container() {
                return Shape::Unbounded;
            }
            return input.max(if name == "list" {
                Shape::Bounded
            } else {
                Shape::Scalar
            });
        }
        if name == "sum" {
            return if f
                .args
                .iter()
                .any(|a| matches!(a, CallArg::Kwarg("start", _)))
            {
                Shape::Unbounded
            } else {
                Shape::Scalar
            };
        }
        if name == "chain" || name == "zip" {
            return Shape::Unbounded;
        }
        // Unknown filters fail when they run.
        Shape::Scalar
    }

    fn call_shape(&self, c: &ast::Call<'_>) -> Shape {
        match &c.expr {
            Expr::Var(v) if !self.vars.contains_key(v.id) => match v.id {
                "range" => Shape::Bounded,
                "dict" => {
                    if c.args.iter().all(|a| is_constant(call_arg_expr(a))) {
                        Shape::Bounded
                    } else {
                        Shape::Unbounded
                    }
                }
                "lipsum" | "raise_exception" | "loop" | "caller" => Shape::Scalar,
                name if self.macros.contains(name) => Shape::Scalar,
                _ => Shape::Unbounded,
            },
            Expr::GetAttr(method) => {
                let receiver = self.shape(&method.expr);
                if receiver == Shape::Scalar {
                    if SPLITTING_METHODS.contains(&method.name) {
                        Shape::Bounded
                    } else {
                        Shape::Scalar
                    }
                } else if matches!(method.name, "count" | "index" | "find") {
                    Shape::Scalar
                } else {
                    // `get(key, default)` may return its argument.
                    c.args
                        .iter()
                        .map(|a| self.shape(call_arg_expr(a)))
                        .fold(receiver, Shape::max)
                }
            }
            _ => Shape::Unbounded,
        }
    }

    fn check_stmts(&mut self, stmts: &[Stmt<'_>], repeated: bool) -> Result<(), Refusal> {
        stmts.iter().try_for_each(|s| self.check_stmt(s, repeated))
    }

    fn check_stmt(&mut self, stmt: &Stmt<'_>, repeated: bool) -> Result<(), Refusal> {
        match stmt {
            Stmt::Template(t) => self.check_stmts(&t.children, repeated),
            Stmt::EmitExpr(e) => self.check_expr(&e.expr, repeated),
            Stmt::ForLoop(f) => {
                self.check_expr(&f.iter, repeated)?;
                if let Some(filter) = &f.filter_expr {
                    self.check_expr(filter, true)?;
                }
                self.check_stmts(&f.body, true)?;
                self.check_stmts(&f.else_body, repeated)
            }
            Stmt::IfCond(i) => {
                self.check_expr(&i.expr, repeated)?;
                self.check_stmts(&i.true_body, repeated)?;
                self.check_stmts(&i.false_body, repeated)
            }
            Stmt::WithBlock(w) => {
                for (_, expr) in &w.assignments {
                    self.check_expr(expr, repeated)?;
                }
                self.check_stmts(&w.body, repeated)
            }
            Stmt::Set(s) => self.check_expr(&s.expr, repeated),
            Stmt::SetBlock(s) => {
                if let Some(f) = &s.filter {
                    self.check_expr(f, repeated)?;
                }
                self.check_stmts(&s.body, repeated)
            }
            Stmt::AutoEscape(a) => {
                self.check_expr(&a.enabled, repeated)?;
                self.check_stmts(&a.body, repeated)
            }
            Stmt::FilterBlock(f) => {
                self.check_expr(&f.filter, repeated)?;
                self.check_stmts(&f.body, repeated)
            }
            Stmt::Block(b) => self.check_stmts(&b.body, repeated),
            Stmt::Macro(m) => self.check_macro(m),
            Stmt::CallBlock(c) => {
                self.check_call(&c.call, repeated)?;
                self.check_macro(&c.macro_decl)
            }
            Stmt::Do(d) => self.check_call(&d.call, repeated),
            Stmt::Import(i) => self.check_expr(&i.expr, repeated),
            Stmt::FromImport(i) => self.check_expr(&i.expr, repeated),
            Stmt::Extends(e) => self.check_expr(&e.name, repeated),
            Stmt::Include(i) => self.check_expr(&i.name, repeated),
            _ => Ok(()),
        }
    }

    /// A macro's body and defaults run once per call: any number of times.
    fn check_macro(&mut self, m: &ast::Macro<'_>) -> Result<(), Refusal> {
        for default in &m.defaults {
            self.check_expr(default, true)?;
        }
        self.check_stmts(&m.body, true)
    }

    fn check_call(&mut self, c: &ast::Call<'_>, repeated: bool) -> Result<(), Refusal> {
        self.check_expr(&c.expr, repeated)?;
        for arg in &c.args {
            self.check_expr(call_arg_expr(arg), repeated)?;
        }
        Ok(())
    }

    /// Records a list growth of `factor` at `line`.
    fn grow(&mut self, factor: u64, line: u16, what: &str, repeated: bool) -> Result<(), Refusal> {
        let refuse = |reason: String| Refusal {
            line: usize::from(line),
            reason,
        };
        if repeated {
            return Err(refuse(format!(
                "{what} inside a loop or macro can grow a list without bound \
                 (minijinja does not charge list joins); join strings with `~` or `+ '…'`"
            )));
        }
        self.growth = self.growth.saturating_mul(factor.max(1));
        if self.growth > MAX_LIST_GROWTH {
            return Err(refuse(format!(
                "{what}: the template's list joins and repeats multiply its lists by more than \
                 {MAX_LIST_GROWTH}"
            )));
        }
        Ok(())
    }

    fn check_expr(&mut self, expr: &Expr<'_>, repeated: bool) -> Result<(), Refusal> {
        let line = expr.span().start_line;
        match expr {
            Expr::Var(_) | Expr::Const(_) => Ok(()),
            Expr::Slice(s) => {
                self.check_expr(&s.expr, repeated)?;
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.check_expr(part, repeated)?;
                }
                Ok(())
            }
            Expr::UnaryOp(u) => self.check_expr(&u.expr, repeated),
            Expr::BinOp(b) => {
                self.check_expr(&b.left, repeated)?;
                self.check_expr(&b.right, repeated)?;
                let (l, r) = (self.shape(&b.left), self.shape(&b.right));
                match b.op {
                    BinOpKind::Concat if l == Shape::Unbounded || r == Shape::Unbounded => {
                        Err(text_of_unbounded(line, "`~`"))
                    }
                    // Appending a literal (`acc + [item]`) adds a fixed number of items per
                    // run, which fuel bounds; joining two lists of any size can double one.
                    BinOpKind::Add
                        if l.is_container()
                            && r.is_container()
                            && !is_literal(&b.left)
                            && !is_literal(&b.right) =>
                    {
                        self.grow(2, line, "`+` on two lists", repeated)
                    }
                    BinOpKind::Mul if l.is_container() || r.is_container() => {
                        let count = if l.is_container() { &b.right } else { &b.left };
                        match constant_count(count) {
                            Some(n) => self.grow(n, line, "`*` on a list", repeated),
                            None => Err(Refusal {
                                line: usize::from(line),
                                reason: "`*` repeats a list by a count that is not a \
                                         constant integer"
                                    .into(),
                            }),
                        }
                    }
                    _ => Ok(()),
                }
            }
            Expr::Compare(c) => {
                self.check_expr(&c.expr, repeated)?;
                c.ops
                    .iter()
                    .try_for_each(|op| self.check_expr(&op.expr, repeated))
            }
            Expr::IfExpr(i) => {
                self.check_expr(&i.test_expr, repeated)?;
                self.check_expr(&i.true_expr, repeated)?;
                match &i.false_expr {
                    Some(e) => self.check_expr(e, repeated),
                    None => Ok(()),
                }
            }
            Expr::Filter(f) => {
                if let Some(e) = &f.expr {
                    self.check_expr(e, repeated)?;
                }
                for arg in &f.args {
                    self.check_expr(call_arg_expr(arg), repeated)?;
                }
                self.check_filter(f, line, repeated)
            }
            Expr::Test(t) => {
                self.check_expr(&t.expr, repeated)?;
                t.args
                    .iter()
                    .try_for_each(|a| self.check_expr(call_arg_expr(a), repeated))
            }
            Expr::GetAttr(a) => self.check_expr(&a.expr, repeated),
            Expr::GetItem(g) => {
                self.check_expr(&g.expr, repeated)?;
                self.check_expr(&g.subscript_expr, repeated)
            }
            Expr::Call(c) => self.check_call(c, repeated),
            Expr::List(l) => l
                .items
                .iter()
                .try_for_each(|e| self.check_expr(e, repeated)),
            Expr::Tuple(t) => t
                .items
                .iter()
                .try_for_each(|e| self.check_expr(e, repeated)),
            Expr::Map(m) => m
                .keys
                .iter()
                .chain(&m.values)
                .try_for_each(|e| self.check_expr(e, repeated)),
        }
    }

    fn check_filter(
        &mut self,
        f: &ast::Filter<'_>,
        line: u16,
        repeated: bool,
    ) -> Result<(), Refusal> {
        let input = f.expr.as_ref().map_or(Shape::Scalar, |e| self.shape(e));
        let any_unbounded = input == Shape::Unbounded
            || f.args
                .iter()
                .any(|a| self.shape(call_arg_expr(a)) == Shape::Unbounded);
        let refuse = |reason: String| Refusal {
            line: usize::from(line),
            reason,
        };
        match f.name {
            name if TEXT_FILTERS.contains(&name) && any_unbounded => {
                Err(text_of_unbounded(line, &format!("`{name}`")))
            }
            "map" if input == Shape::Unbounded => match f.args.first() {
                Some(CallArg::Kwarg(..)) | None => Ok(()),
                Some(CallArg::Pos(Expr::Const(c)))
                    if c.value.as_str().is_some_and(|n| {
                        !TEXT_FILTERS.contains(&n) && n != "map" && n != "sum"
                    }) =>
                {
                    Ok(())
                }
                _ => Err(refuse(
                    "`map` applies a text filter to the items of a list built from references"
                        .into(),
                )),
            },
            "sum" if input.is_container() => {
                if input == Shape::Unbounded {
                    return Err(refuse(
                        "`sum` joins the items of a list built from references".into(),
                    ));
                }
                self.grow(2, line, "`sum`", repeated)
            }
            "chain" | "zip" if input.is_container() => {
                if f.args
                    .iter()
                    .any(|a| matches!(a, CallArg::PosSplat(_) | CallArg::KwargSplat(_)))
                {
                    return Err(refuse(format!("`{}` with a spread argument", f.name)));
                }
                let parts = 1 + f.args.len() as u64;
                self.grow(parts, line, &format!("`{}`", f.name), repeated)
            }
            _ => Ok(()),
        }
    }
}

/// The refusal of `what` (an operator or filter) turning an unbounded container into text.
fn text_of_unbounded(line: u16, what: &str) -> Refusal {
    Refusal {
        line: usize::from(line),
        reason: format!(
            "{what} turns a list or map built from references into text, which can be \
             exponentially long; print it with `{{{{ … }}}}` or `|tojson` instead"
        ),
    }
}

/// A constant, or a list, tuple or map literal of constants.
fn is_constant(expr: &Expr<'_>) -> bool {
    match expr {
        Expr::Const(_) => true,
        Expr::List(l) => l.items.iter().all(is_constant),
        Expr::Tuple(t) => t.items.iter().all(is_constant),
        Expr::Map(m) => m.keys.iter().chain(&m.values).all(is_constant),
        _ => false,
    }
}

/// A list or tuple literal (or one the parser folded to a constant): its length is fixed by
/// the source.
fn is_literal(expr: &Expr<'_>) -> bool {
    match expr {
        Expr::List(_) | Expr::Tuple(_) => true,
        Expr::Const(c) => c.value.kind() == ValueKind::Seq,
        _ => false,
    }
}

/// A `namespace(…)` call.
fn is_namespace_call(expr: &Expr<'_>) -> bool {
    matches!(expr, Expr::Call(c) if matches!(&c.expr, Expr::Var(v) if v.id == "namespace"))
}

/// The count of a list repeat when it is a non-negative integer constant.
fn constant_count(expr: &Expr<'_>) -> Option<u64> {
    match expr {
        Expr::Const(c) if c.value.kind() == ValueKind::Number => {
            c.value.as_i64().and_then(|n| u64::try_from(n).ok())
        }
        _ => None,
    }
}

fn call_arg_expr<'a, 'b>(arg: &'b CallArg<'a>) -> &'b Expr<'a> {
    match arg {
        CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) | CallArg::KwargSplat(e) => e,
    }
}
