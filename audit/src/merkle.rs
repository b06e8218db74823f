//! The audit log as a Merkle tree, exactly as RFC 6962 §2.1 / RFC 9162
//! §2.1 define it: leaves hashed as `SHA-256(0x00 || data)`, interior
//! nodes as `SHA-256(0x01 || left || right)`, the tree of `n` leaves split
//! at the largest power of two smaller than `n`, and the empty tree's hash
//! `SHA-256("")`. Inclusion and consistency proofs follow the RFCs' `PATH`
//! and `PROOF` definitions and verify with RFC 9162's algorithms, so any
//! transparency-log tooling can check them.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index is not a leaf of a tree of that size.
    #[error("leaf {index} is not in a tree of {size} records")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first tree is larger than the second.
    #[error("a tree of {first} records cannot be a prefix of one of {second}")]
    SizesOutOfOrder {
        /// The earlier size.
        first: u64,
        /// The later size.
        second: u64,
    },
    /// The proof has the wrong number of hashes for the sizes.
    #[error("the proof has {got} hashes where {expected} are needed")]
    WrongLength {
        /// Hashes given.
        got: usize,
        /// Hashes the sizes call for.
        expected: usize,
    },
    /// The proof leads to another root than the one claimed.
    #[error("the proof leads to root {computed}, not to {claimed}")]
    RootMismatch {
        /// Hex of the computed root.
        computed: String,
        /// Hex of the claimed root.
        claimed: String,
    },
}

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The hash of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (`n >= 2`): where RFC 6962
/// splits a tree of `n` leaves.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root of the tree over `leaves` (leaf hashes), `MTH(D[n])`.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::default();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root()
}

/// The inclusion proof of leaf `index` in the tree over `leaves`:
/// RFC 6962's `PATH(m, D[n])`, leaf side first.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::new();
    path(leaves, index as usize, &mut proof);
    Ok(proof)
}

fn path(leaves: &[Hash], m: usize, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(&leaves[..k], m, proof);
        proof.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], m - k, proof);
        proof.push(root(&leaves[..k]));
    }
}

/// The consistency proof between the first `first` leaves and all of
/// `leaves`: RFC 6962's `PROOF(m, D[n])`.
pub fn consistency_proof(leaves: &[Hash], first: u64) -> Result<Vec<Hash>, ProofError> {
    let second = leaves.len() as u64;
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    let mut proof = Vec::new();
    if first > 0 && first < second {
        subproof(leaves, first as usize, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(leaves: &[Hash], m: usize, whole: bool, proof: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            proof.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(&leaves[..k], m, whole, proof);
        proof.push(root(&leaves[k..]));
    } else {
        subproof(&leaves[k..], m - k, false, proof);
        proof.push(root(&leaves[..k]));
    }
}

/// Checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_length(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        r = if climb(&mut fn_, &mut sn) {
            node_hash(p, &r)
        } else {
            node_hash(&r, p)
        };
    }
    matches(&r, root)
}

/// How many hashes an inclusion proof of `index` in `size` has: the
/// levels where the leaf's path and the last leaf's path part, plus the
/// levels above where the leaf's subtree has a left sibling.
fn inclusion_length(index: u64, size: u64) -> usize {
    let inner = inclusion_inner(index, size);
    inner + (index >> inner).count_ones() as usize
}

/// The levels where the paths of leaf `index` and of the last leaf of a
/// tree of `size` part.
fn inclusion_inner(index: u64, size: u64) -> usize {
    (64 - (index ^ (size - 1)).leading_zeros()) as usize
}

/// Checks that the tree of `first` leaves with root `first_root` is a
/// prefix of the tree of `second` leaves with root `second_root` (RFC
/// 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected: 0,
            });
        }
        return if first == second {
            matches(first_root, second_root)
        } else {
            Ok(())
        };
    }
    // Now 0 < first < second. The proof is the path of the last leaf of
    // the first tree, minus the levels inside the perfect subtree that
    // ends it, plus that subtree's root unless it is the whole first tree.
    let inner = inclusion_inner(first - 1, second) - first.trailing_zeros() as usize;
    let border = ((first - 1) >> inclusion_inner(first - 1, second)).count_ones() as usize;
    let seed_sent = usize::from(!first.is_power_of_two());
    let expected = seed_sent + inner + border;
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    // When `first` is a power of two, its root is the first node of the
    // path and is not sent.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let mut fn_ = first - 1;
    let mut sn = second - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected,
            });
        }
        if climb(&mut fn_, &mut sn) {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
        } else {
            sr = node_hash(&sr, c);
        }
    }
    if sn != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    matches(&fr, first_root)?;
    matches(&sr, second_root)
}

/// One step up RFC 9162's verification walk, where `fn_` is the node's
/// index and `sn` the last node's index at the current level: tells
/// whether the next proof hash is the left sibling, and moves both indices
/// to the level where that hash's parent sits.
fn climb(fn_: &mut u64, sn: &mut u64) -> bool {
    let left = *fn_ & 1 == 1 || *fn_ == *sn;
    if left {
        // A right-edge node has no right sibling: skip the levels where
        // it is its parent's only child.
        while *fn_ & 1 == 0 && *fn_ != 0 {
            *fn_ >>= 1;
            *sn >>= 1;
        }
    }
    *fn_ >>= 1;
    *sn >>= 1;
    left
}

fn matches(computed: &Hash, claimed: &Hash) -> Result<(), ProofError> {
    if computed == claimed {
        Ok(())
    } else {
        Err(ProofError::RootMismatch {
            computed: hex::encode(computed),
            claimed: hex::encode(claimed),
        })
    }
}

/// The right edge of a growing tree: the roots of its perfect subtrees,
/// largest first. Appending a leaf and reading the root take O(log n)
/// hashes and memory, so the sealer follows the whole log without holding
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One root per set bit of `size`, from the highest bit down.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The number of leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Each trailing one bit of the old size is a perfect subtree of
        // the new leaf's height, now completed by it.
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.nodes.pop().expect("one node per set bit");
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The frontier of a tree of `size` leaves from the roots of its
    /// perfect subtrees, largest first (one per set bit of `size`); `None`
    /// when the count does not fit the size.
    pub fn from_nodes(size: u64, nodes: Vec<Hash>) -> Option<Frontier> {
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { size, nodes })
    }

    /// The roots of the perfect subtrees, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// The root of the tree so far, `MTH(D[size])`.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests;
