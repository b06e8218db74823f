//! Tests of the parent module: the published RFC 6962 vectors (data in
//! `testdata/rfc6962.json`, computed by no code here), then every proof
//! of many tree sizes against the recursive definitions, and tampering.

use super::*;

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../testdata/rfc6962.json")).expect("valid vectors")
}

fn hash(value: &serde_json::Value) -> Hash {
    hex::decode(value.as_str().expect("hex string"))
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn hashes(value: &serde_json::Value) -> Vec<Hash> {
    value.as_array().expect("array").iter().map(hash).collect()
}

fn reference_leaves() -> Vec<Hash> {
    vectors()["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&hex::decode(l.as_str().unwrap()).unwrap()))
        .collect()
}

#[test]
fn roots_match_the_published_vectors() {
    let v = vectors();
    let leaves = reference_leaves();
    assert_eq!(root(&[]), hash(&v["empty_root"]));
    for (n, expected) in hashes(&v["roots"]).iter().enumerate() {
        assert_eq!(
            hex::encode(root(&leaves[..n + 1])),
            hex::encode(expected),
            "size {}",
            n + 1
        );
    }
}

#[test]
fn inclusion_proofs_match_the_published_vectors() {
    let v = vectors();
    let leaves = reference_leaves();
    let roots = hashes(&v["roots"]);
    for case in v["inclusion"].as_array().unwrap() {
        let index = case["index"].as_u64().unwrap();
        let size = case["size"].as_u64().unwrap();
        let expected = hashes(&case["proof"]);
        let tree = &leaves[..size as usize];
        assert_eq!(
            inclusion_proof(tree, index).unwrap(),
            expected,
            "{index} in {size}"
        );
        let root = &roots[size as usize - 1];
        verify_inclusion(index, size, &leaves[index as usize], &expected, root).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_published_vectors() {
    let v = vectors();
    let leaves = reference_leaves();
    let roots = hashes(&v["roots"]);
    for case in v["consistency"].as_array().unwrap() {
        let first = case["first"].as_u64().unwrap();
        let second = case["second"].as_u64().unwrap();
        let expected = hashes(&case["proof"]);
        assert_eq!(
            consistency_proof(&leaves[..second as usize], first).unwrap(),
            expected,
            "{first} to {second}"
        );
        verify_consistency(
            first,
            second,
            &roots[first as usize - 1],
            &roots[second as usize - 1],
            &expected,
        )
        .unwrap();
    }
}

fn synthetic(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("record {i}").as_bytes()))
        .collect()
}

/// Every altered form of a proof: each hash with one bit flipped, one
/// hash dropped, one added at either end.
fn tampered(proof: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][0] ^= 8;
        out.push(p);
    }
    if !proof.is_empty() {
        out.push(proof[..proof.len() - 1].to_vec());
    }
    let mut longer = proof.to_vec();
    longer.push([7u8; 32]);
    out.push(longer);
    let mut front = vec![[7u8; 32]];
    front.extend_from_slice(proof);
    out.push(front);
    out
}

#[test]
fn every_leaf_of_every_small_tree_proves_its_inclusion_and_nothing_else_does() {
    let all = synthetic(70);
    for size in 1..=all.len() {
        let tree = &all[..size];
        let root = root(tree);
        let size = size as u64;
        for index in 0..size {
            let leaf = &tree[index as usize];
            let proof = inclusion_proof(tree, index).unwrap();
            verify_inclusion(index, size, leaf, &proof, &root).unwrap();
            for bad in tampered(&proof) {
                assert!(verify_inclusion(index, size, leaf, &bad, &root).is_err());
            }
            if size > 1 {
                let other = (index + 1) % size;
                assert!(verify_inclusion(other, size, leaf, &proof, &root).is_err());
                assert!(
                    verify_inclusion(index, size, &tree[other as usize], &proof, &root).is_err()
                );
            }
            assert!(verify_inclusion(index, size * 2, leaf, &proof, &root).is_err());
            assert!(verify_inclusion(index, size, leaf, &proof, &empty_root()).is_err());
        }
        assert_eq!(
            inclusion_proof(tree, size),
            Err(ProofError::IndexOutOfRange { index: size, size })
        );
    }
}

#[test]
fn every_pair_of_small_trees_proves_consistency_and_tampering_is_caught() {
    let all = synthetic(40);
    let roots: Vec<Hash> = (0..=all.len()).map(|n| root(&all[..n])).collect();
    for second in 1..=all.len() {
        for first in 1..=second {
            let proof = consistency_proof(&all[..second], first as u64).unwrap();
            let (f, s) = (first as u64, second as u64);
            verify_consistency(f, s, &roots[first], &roots[second], &proof).unwrap();
            if first == second {
                continue;
            }
            for bad in tampered(&proof) {
                assert!(verify_consistency(f, s, &roots[first], &roots[second], &bad).is_err());
            }
            assert!(verify_consistency(f, s, &roots[second], &roots[first], &proof).is_err());
            assert!(verify_consistency(f, s, &roots[first - 1], &roots[second], &proof).is_err());
            assert!(verify_consistency(s, f, &roots[first], &roots[second], &proof).is_err());
        }
    }
}

#[test]
fn the_frontier_follows_the_tree_as_it_grows() {
    let all = synthetic(300);
    let mut frontier = Frontier::default();
    assert_eq!(frontier.root(), empty_root());
    for (n, leaf) in all.iter().enumerate() {
        frontier.push(*leaf);
        assert_eq!(frontier.size(), n as u64 + 1);
        // The recursive definition, independent of the frontier.
        assert_eq!(frontier.root(), mth(&all[..=n]), "size {}", n + 1);
    }
}

/// `MTH` exactly as RFC 6962 writes it.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

#[test]
fn a_proof_that_fails_names_the_roots() {
    let tree = synthetic(5);
    let proof = inclusion_proof(&tree, 2).unwrap();
    let err = verify_inclusion(2, 5, &tree[2], &proof, &[0u8; 32]).unwrap_err();
    assert!(err.to_string().contains(&hex::encode([0u8; 32])), "{err}");
    let err = verify_inclusion(2, 5, &tree[2], &proof[..2], &root(&tree)).unwrap_err();
    assert_eq!(
        err,
        ProofError::WrongLength {
            got: 2,
            expected: 3
        }
    );
}
