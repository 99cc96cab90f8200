use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[track_caller]
fn converts(value: f64, from: &str, to: &str, expected: f64) {
    let got = convert(value, from, to).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    assert!(
        close(got, expected),
        "{value} {from} -> {to}: {got}, expected {expected}"
    );
}

#[test]
fn every_unit_of_the_essence_is_resolved() {
    let table: Table = serde_json::from_str(include_str!("../../profiles/ucum.json")).unwrap();
    for code in table.units.keys() {
        assert!(ESSENCE.atoms.contains_key(code), "{code} not resolved");
    }
}

#[test]
fn masses_convert() {
    converts(1.0, "kg", "g", 1000.0);
    converts(2500.0, "g", "kg", 2.5);
    converts(1.0, "[lb_av]", "g", 453.59237);
    converts(1.0, "kg", "[lb_av]", 1000.0 / 453.59237);
    converts(1.0, "[oz_av]", "g", 453.59237 / 16.0);
}

#[test]
fn pressures_convert() {
    converts(760.0, "mm[Hg]", "kPa", 101.324_72);
    converts(1.0, "kPa", "Pa", 1000.0);
}

#[test]
fn concentrations_convert() {
    converts(100.0, "mg/dL", "g/L", 1.0);
    converts(1.0, "mmol/L", "umol/mL", 1.0);
    converts(5.4, "mmol/L", "umol/L", 5400.0);
    converts(1.0, "10*3/uL", "10*9/L", 1.0);
    converts(1.0, "[IU]/L", "[iU]/mL", 0.001);
}

#[test]
fn percent_is_a_hundredth() {
    converts(50.0, "%", "1", 0.5);
    converts(1.0, "%", "10*-2", 1.0);
}

#[test]
fn annotations_are_ignored() {
    converts(1.0, "10*3{cells}/uL", "10*3/uL", 1.0);
    converts(3.0, "{rbc}", "1", 3.0);
    converts(1.0, "mL{total}", "L", 0.001);
    assert_eq!(canonical(2.0, "{tablets}").unwrap().unit, "1");
}

#[test]
fn temperatures_convert_on_their_scales() {
    converts(37.0, "Cel", "K", 310.15);
    converts(310.15, "K", "Cel", 37.0);
    converts(98.6, "[degF]", "Cel", 37.0);
    converts(0.0, "Cel", "[degF]", 32.0);
    converts(80.0, "[degRe]", "Cel", 100.0);
    converts(36.6, "Cel{body}", "Cel", 36.6);
}

#[test]
fn canonical_units_are_base_units_in_a_fixed_order() {
    assert_eq!(
        canonical(1.0, "mg/dL").unwrap(),
        Canonical {
            value: 10.0,
            unit: "m-3.g".into()
        }
    );
    assert_eq!(canonical(1.0, "kg").unwrap().unit, "g");
    assert_eq!(canonical(1.0, "N").unwrap().unit, "m.s-2.g");
    assert_eq!(
        canonical(1.0, "N").unwrap().unit,
        canonical(1.0, "kg.m/s2").unwrap().unit
    );
    assert_eq!(canonical(1.0, "mol/L").unwrap().unit, "m-3");
    assert_eq!(canonical(37.0, "Cel").unwrap().unit, "K");
}

#[test]
fn equal_quantities_have_equal_canonical_values() {
    assert_eq!(
        canonical(5.4, "mmol/L").unwrap(),
        canonical(5400.0, "umol/L").unwrap()
    );
    assert_eq!(
        canonical(0.1, "g/L").unwrap(),
        canonical(10.0, "mg/dL").unwrap()
    );
}

#[test]
fn grammar_parentheses_exponents_and_leading_slash() {
    converts(1.0, "kg/(m.s2)", "Pa", 1.0);
    converts(1.0, "kg.m-1.s-2", "Pa", 1.0);
    converts(1.0, "/min", "s-1", 1.0 / 60.0);
    converts(1.0, "m+2", "cm2", 10000.0);
    // Left-associative: (kg/m).s
    assert_eq!(canonical(1.0, "kg/m.s").unwrap().unit, "m-1.s.g");
    converts(1.0, "4.[pi]", "1", 4.0 * std::f64::consts::PI);
}

#[test]
fn whole_atoms_are_preferred_to_prefixes() {
    // cd is candela, not centi-day; Pa pascal, not peta-year.
    assert_eq!(canonical(1.0, "cd").unwrap().unit, "cd");
    assert_eq!(canonical(1.0, "Pa").unwrap().unit, "m-1.s-2.g");
    converts(1.0, "dam", "m", 10.0);
}

#[test]
fn mass_and_amount_of_substance_are_not_commensurable() {
    assert!(matches!(
        convert(1.0, "mg/dL", "mmol/L"),
        Err(UcumError::Incommensurable { .. })
    ));
    assert!(matches!(
        convert(1.0, "[IU]/L", "g/L"),
        Err(UcumError::Incommensurable { .. })
    ));
    assert!(matches!(
        convert(1.0, "Cel", "m"),
        Err(UcumError::Incommensurable { .. })
    ));
}

#[test]
fn special_units_are_refused_unless_alone_and_affine() {
    for unit in ["[pH]", "B[V]", "Np", "mCel", "Cel/s", "Cel2", "[degF].m"] {
        assert!(
            matches!(canonical(1.0, unit), Err(UcumError::Special { .. })),
            "{unit}: {:?}",
            canonical(1.0, unit)
        );
    }
}

#[test]
fn malformed_units_are_errors() {
    for unit in [
        "",
        "kg/",
        "/",
        "m..s",
        "(m",
        "m)",
        "{abc",
        "[lb_av",
        "lb_av]",
        "k g",
        "xyz",
        "mm Hg",
        "m/s{a{b}}",
        "2m",
        "-3",
        "m2-",
        "mé",
        "m[lb_av]",
        "m-99999999999",
    ] {
        assert!(
            canonical(1.0, unit).is_err(),
            "{unit:?} accepted: {:?}",
            canonical(1.0, unit)
        );
    }
    assert!(matches!(
        canonical(f64::NAN, "g"),
        Err(UcumError::NotFinite(_))
    ));
}
