//! The 17 rare-earth elements and the forms they are held in. The migration seeds
//! the same list into the database (with element-mass factors); this copy lets
//! requests be validated before any database call.

use std::fmt;

use serde::Serialize;

/// `(symbol, atomic number)` in atomic-number order.
pub const ELEMENTS: [(&str, i32); 17] = [
    ("Sc", 21),
    ("Y", 39),
    ("La", 57),
    ("Ce", 58),
    ("Pr", 59),
    ("Nd", 60),
    ("Pm", 61),
    ("Sm", 62),
    ("Eu", 63),
    ("Gd", 64),
    ("Tb", 65),
    ("Dy", 66),
    ("Ho", 67),
    ("Er", 68),
    ("Tm", 69),
    ("Yb", 70),
    ("Lu", 71),
];

/// A rare-earth element symbol in its canonical spelling (`Nd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementSymbol(&'static str);

impl ElementSymbol {
    /// Accepts any ASCII case (`nd`, `ND`); refuses everything else, including
    /// look-alike letters from other scripts.
    pub fn parse(s: &str) -> Result<ElementSymbol, String> {
        ELEMENTS
            .iter()
            .find(|(sym, _)| s.is_ascii() && sym.eq_ignore_ascii_case(s))
            .map(|(sym, _)| ElementSymbol(sym))
            .ok_or_else(|| {
                format!(
                    "is not a rare-earth element symbol; use one of {}",
                    ELEMENTS.map(|e| e.0).join(", ")
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ElementSymbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for ElementSymbol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// The physical material a stockpile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    Oxide,
    Metal,
    Alloy,
    Carbonate,
    Other,
}

impl Form {
    pub const ALL: [Form; 5] = [
        Form::Oxide,
        Form::Metal,
        Form::Alloy,
        Form::Carbonate,
        Form::Other,
    ];

    pub fn parse(s: &str) -> Result<Form, String> {
        Form::ALL
            .into_iter()
            .find(|f| s.is_ascii() && f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| "must be one of oxide, metal, alloy, carbonate, other".to_string())
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Form::Oxide => "oxide",
            Form::Metal => "metal",
            Form::Alloy => "alloy",
            Form::Carbonate => "carbonate",
            Form::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_parse_case_insensitively_but_only_in_ascii() {
        assert_eq!(ElementSymbol::parse("nd").unwrap().as_str(), "Nd");
        assert_eq!(ElementSymbol::parse("DY").unwrap().as_str(), "Dy");
        assert!(ElementSymbol::parse("Fe").is_err());
        // Cyrillic "Н" and Greek "Ν" look like a Latin N.
        assert!(ElementSymbol::parse("Нd").is_err());
        assert!(ElementSymbol::parse("Νd").is_err());
        assert!(ElementSymbol::parse("").is_err());
    }

    #[test]
    fn there_are_seventeen_rare_earths() {
        assert_eq!(ELEMENTS.len(), 17);
        assert!(ELEMENTS.windows(2).all(|w| w[0].1 < w[1].1));
    }

    #[test]
    fn forms_parse() {
        assert_eq!(Form::parse("Oxide"), Ok(Form::Oxide));
        assert!(Form::parse("powder").is_err());
    }
}
