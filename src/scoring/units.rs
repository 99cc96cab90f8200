//! The units the models compare in, from whatever unit a source sent. Unit arithmetic is UCUM's
//! (`ucum::convert`); the two conversions between mass and amount of substance need a molar
//! mass, which is domain knowledge, so they are done here.

use serde_json::Value;

use self::ucum_standin as ucum;

/// A measured quantity in the unit a model wants, or why it could not be had.
pub type Converted = Result<f64, String>;

/// The value of an Observation's `valueQuantity` (or of a component's) in `to`.
pub fn quantity_in(quantity: &Value, to: &str) -> Converted {
    let (value, unit) = value_and_unit(quantity)?;
    ucum::convert(value, unit, to).map_err(|e| format!("unit '{unit}' not usable as {to}: {e}"))
}

/// Glucose in mmol/L. mg/dL (any mass concentration) is converted with the molar mass of
/// glucose, 180.16 g/mol: mmol/L = (mg/dL × 10) / 180.16.
pub fn glucose_mmol_per_l(quantity: &Value) -> Converted {
    const GLUCOSE_G_PER_MOL: f64 = 180.16;
    let (value, unit) = value_and_unit(quantity)?;
    if let Ok(v) = ucum::convert(value, unit, "mmol/L") {
        return Ok(v);
    }
    // mg/L ÷ g/mol = mmol/L.
    ucum::convert(value, unit, "mg/L")
        .map(|mg_per_l| mg_per_l / GLUCOSE_G_PER_MOL)
        .map_err(|e| format!("unit '{unit}' is not a glucose concentration: {e}"))
}

/// Haemoglobin in g/dL. LOINC 59260-0 reports mmol/L of the haemoglobin monomer (molar mass
/// 16.11 g/mmol), so 1 mmol/L = 16.11 g/L = 1.611 g/dL.
pub fn haemoglobin_g_per_dl(quantity: &Value) -> Converted {
    const G_PER_DL_PER_MMOL_PER_L: f64 = 1.611;
    let (value, unit) = value_and_unit(quantity)?;
    if let Ok(v) = ucum::convert(value, unit, "g/dL") {
        return Ok(v);
    }
    ucum::convert(value, unit, "mmol/L")
        .map(|mmol| mmol * G_PER_DL_PER_MMOL_PER_L)
        .map_err(|e| format!("unit '{unit}' is not a haemoglobin concentration: {e}"))
}

/// The number and the UCUM unit of a Quantity: `code` when the system is UCUM, else `unit`.
fn value_and_unit(quantity: &Value) -> Result<(f64, &str), String> {
    let value = quantity["value"]
        .as_f64()
        .ok_or_else(|| "no value".to_owned())?;
    let ucum_code = (quantity["system"] == "http://unitsofmeasure.org")
        .then(|| quantity["code"].as_str())
        .flatten();
    let unit = ucum_code
        .or_else(|| quantity["unit"].as_str())
        .ok_or_else(|| "no unit".to_owned())?;
    Ok((value, unit))
}

/// A stand-in for `crate::ucum` (being written elsewhere) with exactly its API, knowing only the
/// units the models meet. Removed when the real module lands.
mod ucum_standin {
    #[derive(Debug)]
    pub struct UcumError(String);

    impl std::fmt::Display for UcumError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    /// A value in base units with its dimension.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Canonical {
        pub value: f64,
        pub dimension: &'static str,
    }

    fn factor(unit: &str) -> Option<(f64, &'static str)> {
        Some(match unit {
            "kg" => (1000.0, "M"),
            "g" => (1.0, "M"),
            "[lb_av]" => (453.59237, "M"),
            "mm[Hg]" => (133.322, "P"),
            "%" => (0.01, "1"),
            "mmol/L" => (1.0, "N/V"),
            "mol/L" => (1000.0, "N/V"),
            "umol/L" => (0.001, "N/V"),
            "mg/dL" => (10.0, "M/V"),
            "mg/L" => (1.0, "M/V"),
            "g/dL" => (10_000.0, "M/V"),
            "g/L" => (1000.0, "M/V"),
            "mEq/L" => (1.0, "N/V"),
            _ => return None,
        })
    }

    pub fn canonical(value: f64, unit: &str) -> Result<Canonical, UcumError> {
        let (f, dimension) =
            factor(unit).ok_or_else(|| UcumError(format!("unknown unit '{unit}'")))?;
        Ok(Canonical {
            value: value * f,
            dimension,
        })
    }

    pub fn convert(value: f64, from: &str, to: &str) -> Result<f64, UcumError> {
        let a = canonical(value, from)?;
        let b = canonical(1.0, to)?;
        if a.dimension != b.dimension {
            return Err(UcumError(format!(
                "'{from}' and '{to}' are not commensurable"
            )));
        }
        Ok(a.value / b.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(value: f64, unit: &str) -> Value {
        json!({"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
    }

    #[test]
    fn glucose_in_mg_per_dl_is_converted_with_the_molar_mass() {
        let v = glucose_mmol_per_l(&q(180.16, "mg/dL")).unwrap();
        assert!((v - 10.0).abs() < 1e-9, "{v}");
        assert_eq!(glucose_mmol_per_l(&q(5.5, "mmol/L")).unwrap(), 5.5);
    }

    #[test]
    fn haemoglobin_in_mmol_per_l_is_converted() {
        let v = haemoglobin_g_per_dl(&q(7.0, "mmol/L")).unwrap();
        assert!((v - 11.277).abs() < 1e-9, "{v}");
        assert!((haemoglobin_g_per_dl(&q(120.0, "g/L")).unwrap() - 12.0).abs() < 1e-9);
    }

    #[test]
    fn unusable_units_are_reported() {
        assert!(quantity_in(&q(80.0, "furlong"), "kg").is_err());
        assert!(quantity_in(&json!({"value": 80}), "kg").is_err());
        assert!((quantity_in(&q(176.37, "[lb_av]"), "kg").unwrap() - 80.0).abs() < 0.01);
    }
}
