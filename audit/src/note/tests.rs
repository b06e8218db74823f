//! Tests of the parent module against the published signed-note vectors
//! (`testdata/signed-note.json`), then checkpoints and tampering.

use super::*;

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../testdata/signed-note.json")).expect("valid vectors")
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().expect("string")
}

#[test]
fn the_specification_example_verifies() {
    let v = &vectors()["spec"];
    let verifier = NoteVerifier::from_key(text(&v["verifier_key"])).unwrap();
    assert_eq!(verifier.key(), text(&v["verifier_key"]));
    assert_eq!(verifier.open(text(&v["note"])).unwrap(), text(&v["text"]));
}

#[test]
fn signing_reproduces_the_reference_note_byte_for_byte() {
    let v = &vectors()["go"];
    let signer = NoteSigner::from_private_key(text(&v["private_key"])).unwrap();
    assert_eq!(signer.private_key(), text(&v["private_key"]));
    assert_eq!(signer.verifier().key(), text(&v["verifier_key"]));
    assert_eq!(signer.key_id(), "c74f20a3");
    let note = signer.sign(text(&v["text"])).unwrap();
    assert_eq!(note, text(&v["note"]));
    let verifier = NoteVerifier::from_key(text(&v["verifier_key"])).unwrap();
    assert_eq!(verifier.open(&note).unwrap(), text(&v["text"]));
}

#[test]
fn altered_notes_and_other_keys_are_refused() {
    let v = &vectors()["go"];
    let verifier = NoteVerifier::from_key(text(&v["verifier_key"])).unwrap();
    let note = text(&v["note"]);
    let altered = note.replace("cryptography", "cryptographY");
    assert_eq!(
        verifier.open(&altered),
        Err(NoteError::BadSignature {
            name: "PeterNeumann".into()
        })
    );
    let other = NoteSigner::from_seed("PeterNeumann", [9u8; 32]).unwrap();
    let forged = other.sign(text(&v["text"])).unwrap();
    assert_eq!(
        verifier.open(&forged),
        Err(NoteError::NotSignedBy {
            name: "PeterNeumann".into()
        })
    );
    assert!(verifier.open("no signatures\n").is_err());
    assert!(
        NoteVerifier::from_key(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err()
    );
    assert!(
        NoteVerifier::from_key(
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err()
    );
}

#[test]
fn a_signed_checkpoint_round_trips_and_a_replaced_signature_is_refused() {
    let signer = NoteSigner::from_seed("tollgate.example/audit", [3u8; 32]).unwrap();
    let checkpoint = Checkpoint {
        origin: "tollgate.example/audit".into(),
        size: 1_000_000,
        root: [0xab; 32],
    };
    assert_eq!(
        checkpoint.body(),
        "tollgate.example/audit\n1000000\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n"
    );
    let note = checkpoint.sign(&signer).unwrap();
    let verifier = signer.verifier();
    assert_eq!(Checkpoint::open(&note, &verifier).unwrap(), checkpoint);

    // Another key's signature under the trusted name is not the trusted key.
    let impostor = NoteSigner::from_seed("tollgate.example/audit", [4u8; 32]).unwrap();
    let forged = checkpoint.sign(&impostor).unwrap();
    assert!(matches!(
        Checkpoint::open(&forged, &verifier),
        Err(NoteError::NotSignedBy { .. })
    ));
    assert!(Checkpoint::parse("origin\n01\nAAAA\n").is_err());
    assert!(Checkpoint::parse("origin\n12\nnot base64\n").is_err());
}
