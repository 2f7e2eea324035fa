//! A saga definition from its TOML text: refused with problems that can be
//! shown, or accepted as a document that can be stored and read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaplane_fuzz::{assert_storable_json, assert_storable_text};
use sagaplane_sagas::definition::{Definition, Document};

fuzz_target!(|data: &[u8]| {
    // Files are read as UTF-8 text; other bytes are refused before this.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Definition::from_toml("fuzz.toml", text) {
        Ok(definition) => {
            // Stored as the definitions table keeps it...
            assert_storable_text("the saga type", &definition.saga_type);
            let stored = serde_json::to_value(&definition.document).expect("a document serialises");
            assert_storable_json("the document", &stored);
            // ...and read back by every node as the same definition.
            let document: Document =
                serde_json::from_value(stored).expect("a stored document reads back");
            let again = Definition::from_document("stored", document)
                .unwrap_or_else(|e| panic!("a stored document is refused: {e}"));
            assert_eq!(again.hash, definition.hash);
            assert_eq!(again, definition);
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            for problem in &e.problems {
                assert_storable_text("a problem's place", &problem.at);
                assert_storable_text("a problem", &problem.message);
            }
        }
    }
});
