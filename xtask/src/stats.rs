//! The significance tests of the research tools: the two-sided Mann-Whitney U
//! test (Wilcoxon rank-sum), and for paired samples the Wilcoxon signed-rank
//! test. Boot times on a shared machine are skewed and often bimodal, so a
//! rank test suits them better than a t-test. Exact p-values for small
//! samples without ties; otherwise the normal approximation with the tie
//! correction and a continuity correction (statrs' normal CDF).

use statrs::distribution::{ContinuousCDF, Normal};

/// Samples up to this many in total get the exact distribution of U.
const EXACT_LIMIT: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct MannWhitney {
    /// U of the first sample (how often one of its values beats one of the
    /// second's, ties counting one half).
    pub u: f64,
    /// Two-sided p-value.
    pub p: f64,
    pub exact: bool,
}

/// Ranks 1..=n of `values` (ties share their mean rank), and Σ(t³ − t) over
/// the groups of ties.
fn ranks(values: &[f64]) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut rank = vec![0.0; values.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            rank[k] = mean;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (rank, ties)
}

/// Number of arrangements of `n1` and `n2` values (no ties) giving each U,
/// for U = 0..=n1·n2.
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    // f(a, b, u) = f(a − 1, b, u − b) + f(a, b − 1, u): the largest value
    // comes from the first sample (and beats all b of the second) or not.
    let max = n1 * n2;
    // The distributions for (a, b − 1), a = 0..=n1; with b = 0, U is 0.
    let mut base = vec![0.0; max + 1];
    base[0] = 1.0;
    let mut prev = vec![base; n1 + 1];
    for b in 1..=n2 {
        let mut cur: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n1 + 1];
        cur[0][0] = 1.0;
        for a in 1..=n1 {
            for u in 0..=max {
                let mut v = prev[a][u];
                if u >= b {
                    v += cur[a - 1][u - b];
                }
                cur[a][u] = v;
            }
        }
        prev = cur;
    }
    prev.swap_remove(n1)
}

/// The two-sided Mann-Whitney U test of `a` against `b`. None when either is
/// empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let all: Vec<f64> = a.iter().chain(b).copied().collect();
    let (rank, ties) = ranks(&all);
    let r1: f64 = rank[..n1].iter().sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let mean = n1f * n2f / 2.0;
    if ties == 0.0 && n1 + n2 <= EXACT_LIMIT {
        let dist = u_distribution(n1, n2);
        let total: f64 = dist.iter().sum();
        // P(U ≤ min(u, n1·n2 − u)), doubled (U is symmetric)
        let small = u1.min(n1f * n2f - u1).round() as usize;
        let tail: f64 = dist[..=small].iter().sum::<f64>() / total;
        return Some(MannWhitney {
            u: u1,
            p: (2.0 * tail).min(1.0),
            exact: true,
        });
    }
    let n = n1f + n2f;
    let var = n1f * n2f / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        // every value equal: no evidence of a difference
        return Some(MannWhitney {
            u: u1,
            p: 1.0,
            exact: false,
        });
    }
    let z = ((u1 - mean).abs() - 0.5).max(0.0) / var.sqrt();
    let normal = Normal::standard();
    Some(MannWhitney {
        u: u1,
        p: (2.0 * (1.0 - normal.cdf(z))).min(1.0),
        exact: false,
    })
}

/// The Wilcoxon signed-rank test of paired differences.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SignedRank {
    /// W+: the sum of the ranks of the positive differences (of their
    /// absolute values, zeros left out, ties sharing their mean rank).
    pub w_plus: f64,
    /// The differences that are not zero.
    pub n: usize,
    /// Two-sided p-value (1 when every difference is zero).
    pub p: f64,
    pub exact: bool,
}

/// Number of subsets of the ranks 1..=n with each sum, for sums 0..=n(n+1)/2:
/// W+'s distribution under the null hypothesis, times 2^n.
fn w_distribution(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    let mut ways = vec![0.0; max + 1];
    ways[0] = 1.0;
    for r in 1..=n {
        for w in (r..=max).rev() {
            ways[w] += ways[w - r];
        }
    }
    ways
}

/// The two-sided Wilcoxon signed-rank test of `diffs` (each pair's
/// difference) against a median of zero. None when `diffs` is empty.
pub fn signed_rank(diffs: &[f64]) -> Option<SignedRank> {
    if diffs.is_empty() {
        return None;
    }
    let nonzero: Vec<f64> = diffs.iter().copied().filter(|&d| d != 0.0).collect();
    let n = nonzero.len();
    if n == 0 {
        return Some(SignedRank {
            w_plus: 0.0,
            n,
            p: 1.0,
            exact: true,
        });
    }
    let magnitudes: Vec<f64> = nonzero.iter().map(|d| d.abs()).collect();
    let (rank, ties) = ranks(&magnitudes);
    let w_plus: f64 = rank
        .iter()
        .zip(&nonzero)
        .filter(|&(_, &d)| d > 0.0)
        .map(|(r, _)| r)
        .sum();
    let nf = n as f64;
    let max = nf * (nf + 1.0) / 2.0;
    if ties == 0.0 && n <= EXACT_LIMIT {
        let dist = w_distribution(n);
        let total: f64 = dist.iter().sum();
        // P(W+ ≤ min(w, max − w)), doubled (W+ is symmetric)
        let small = w_plus.min(max - w_plus).round() as usize;
        let tail: f64 = dist[..=small].iter().sum::<f64>() / total;
        return Some(SignedRank {
            w_plus,
            n,
            p: (2.0 * tail).min(1.0),
            exact: true,
        });
    }
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - ties / 48.0;
    let z = ((w_plus - max / 2.0).abs() - 0.5).max(0.0) / var.sqrt();
    Some(SignedRank {
        w_plus,
        n,
        p: (2.0 * (1.0 - Normal::standard().cdf(z))).min(1.0),
        exact: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_p_values_match_the_tables() {
        // Completely separated samples of 5 and 5: U = 0, p = 2/252.
        let r = mann_whitney(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]).unwrap();
        assert!(r.exact);
        assert_eq!(r.u, 0.0);
        assert!((r.p - 2.0 / 252.0).abs() < 1e-12, "{}", r.p);
        // and the other way round: U = 25, the same p
        let r = mann_whitney(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(r.u, 25.0);
        assert!((r.p - 2.0 / 252.0).abs() < 1e-12);
        // 3 against 3, separated: 2/20
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!((r.p - 0.1).abs() < 1e-12);
        // interleaved samples: no evidence at all
        let r = mann_whitney(&[1.0, 4.0, 5.0, 8.0], &[2.0, 3.0, 6.0, 7.0]).unwrap();
        assert_eq!(r.u, 8.0);
        assert!((r.p - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_distribution_counts_every_arrangement() {
        // C(n1 + n2, n1) arrangements in all, symmetric around n1·n2/2
        let d = u_distribution(4, 6);
        assert_eq!(d.iter().sum::<f64>(), 210.0);
        assert_eq!(d.len(), 25);
        for u in 0..=24 {
            assert_eq!(d[u], d[24 - u]);
        }
        assert_eq!(u_distribution(1, 1), [1.0, 1.0]);
    }

    #[test]
    fn large_or_tied_samples_use_the_normal_approximation() {
        let a: Vec<f64> = (0..30).map(|i| 100.0 + (i % 7) as f64).collect();
        let b: Vec<f64> = (0..30).map(|i| 104.0 + (i % 7) as f64).collect();
        let r = mann_whitney(&a, &b).unwrap();
        assert!(!r.exact);
        assert!(r.p < 0.001, "{}", r.p);
        let r = mann_whitney(&a, &a).unwrap();
        assert!(r.p > 0.9, "{}", r.p);
        // all equal: p = 1, not NaN
        let r = mann_whitney(&[5.0, 5.0], &[5.0, 5.0, 5.0]).unwrap();
        assert_eq!(r.p, 1.0);
        assert!(mann_whitney(&[], &[1.0]).is_none());
        assert!(mann_whitney(&[1.0], &[]).is_none());
    }

    #[test]
    fn signed_rank_p_values_match_the_tables() {
        // Five differences all positive: W+ = 15, p = 2/32.
        let r = signed_rank(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert!(r.exact);
        assert_eq!((r.w_plus, r.n), (15.0, 5));
        assert!((r.p - 2.0 / 32.0).abs() < 1e-12, "{}", r.p);
        // the same, all negative
        let r = signed_rank(&[-1.0, -2.0, -3.0, -4.0, -5.0]).unwrap();
        assert_eq!(r.w_plus, 0.0);
        assert!((r.p - 2.0 / 32.0).abs() < 1e-12);
        // 1, -2, 3, -4: W+ = 4 of 10; of the 16 sign patterns 7 give
        // W+ <= 4: p = 14/16
        let r = signed_rank(&[1.0, -2.0, 3.0, -4.0]).unwrap();
        assert_eq!(r.w_plus, 4.0);
        assert!((r.p - 14.0 / 16.0).abs() < 1e-12, "{}", r.p);
        // zeros are left out
        let r = signed_rank(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(r.n, 5);
        assert!((r.p - 2.0 / 32.0).abs() < 1e-12);
    }

    #[test]
    fn signed_rank_distribution_counts_every_subset() {
        let d = w_distribution(6);
        assert_eq!(d.iter().sum::<f64>(), 64.0);
        assert_eq!(d.len(), 22);
        for w in 0..=21 {
            assert_eq!(d[w], d[21 - w]);
        }
    }

    #[test]
    fn signed_rank_with_ties_or_many_pairs_is_approximated() {
        // ties among the magnitudes
        let r = signed_rank(&[2.0, 2.0, 2.0, 3.0, 3.0, 4.0, -1.0]).unwrap();
        assert!(!r.exact);
        assert!(r.p > 0.0 && r.p < 0.2, "{}", r.p);
        let shifted: Vec<f64> = (0..50)
            .map(|i| 3.0 + (i % 9) as f64 - 4.0 + 0.01 * i as f64)
            .collect();
        let r = signed_rank(&shifted).unwrap();
        assert!(!r.exact && r.p < 0.001, "{r:?}");
        let centred: Vec<f64> = (0..50)
            .map(|i| {
                if i % 2 == 0 {
                    i as f64 + 1.0
                } else {
                    -(i as f64)
                }
            })
            .collect();
        assert!(signed_rank(&centred).unwrap().p > 0.5);
        assert_eq!(signed_rank(&[0.0, 0.0]).unwrap().p, 1.0);
        assert!(signed_rank(&[]).is_none());
    }
}
