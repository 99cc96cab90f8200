//! The units the models compare in, from whatever unit a source sent. Unit arithmetic is UCUM's
//! (`ucum::convert`); the two conversions between mass and amount of substance need a molar
//! mass, which is domain knowledge, so they are done here.

use serde_json::Value;

use crate::ucum;

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
