//! Member offsets of a kernel struct from the kernel's BTF (`/sys/kernel/btf/vmlinux`), for
//! the socket tracepoints: `struct sock_common`'s IPv6 addresses sit after pointer-sized and
//! configuration-dependent members, so their offsets are read from the running kernel's own
//! type information at load time and handed to the program ([`SockOffsets`]).
//!
//! Only what that needs is parsed: the header, the string section and the type records
//! (Documentation/bpf/btf.rst, "BTF Type and String Encoding"), walking every record because
//! records are variable-length and type ids are their positions.

use mxcert_ebpf::tls::SockOffsets;

/// Where the kernel publishes its own BTF (CONFIG_DEBUG_INFO_BTF).
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Environment variable naming another raw BTF file of the running kernel, for a kernel built
/// without CONFIG_DEBUG_INFO_BTF whose BTF comes from elsewhere (BTFHub, `pahole
/// --btf_encode_detached`).
pub const BTF_ENV: &str = "MXCERT_KERNEL_BTF";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Most levels of anonymous struct/union members searched (sock_common nests two).
const MAX_NESTING: u32 = 8;

/// Why the offsets could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("not BTF data or a truncated one ({0})")]
    Malformed(&'static str),
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(String),
    #[error("struct {strukt} has no member {member} of {size} bytes at a byte offset")]
    NoMember {
        strukt: String,
        member: String,
        size: u32,
    },
}

/// One type record: kind, name, `size_or_type`, and the member records of a struct/union.
struct Type {
    kind: u32,
    name: u32,
    size_or_type: u32,
    /// (name offset, type id, bit offset) of each member (struct/union only).
    members: Vec<(u32, u32, u32)>,
}

/// Parsed BTF: the type records (index = type id - 1) and the string section.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

impl Btf {
    /// Reads the running kernel's BTF ([`VMLINUX_BTF`], or the file [`BTF_ENV`] names).
    pub fn vmlinux() -> Result<Btf, BtfError> {
        let path = std::env::var(BTF_ENV).unwrap_or_else(|_| VMLINUX_BTF.to_string());
        let data = std::fs::read(&path).map_err(|e| BtfError::Read {
            path,
            reason: e.to_string(),
        })?;
        Btf::parse(&data)
    }

    /// Parses little-endian BTF (the byte order of the hosts mxcert runs on).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let bad = BtfError::Malformed;
        let magic = data.get(0..2).ok_or(bad("no header"))?;
        if u16::from_le_bytes([magic[0], magic[1]]) != MAGIC {
            return Err(bad("bad magic or byte order"));
        }
        let h = |i: usize| u32_at(data, 4 + i * 4).map(|v| v as usize);
        let (Some(hdr_len), Some(type_off), Some(type_len), Some(str_off), Some(str_len)) =
            (h(0), h(1), h(2), h(3), h(4))
        else {
            return Err(bad("short header"));
        };
        if hdr_len < HEADER_LEN {
            return Err(bad("short header"));
        }
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        let tsec = section(type_off, type_len).ok_or(bad("type section out of bounds"))?;
        let strings = section(str_off, str_len)
            .ok_or(bad("string section out of bounds"))?
            .to_vec();
        let mut types = Vec::new();
        let mut off = 0;
        while off < tsec.len() {
            let (Some(name), Some(info), Some(size_or_type)) = (
                u32_at(tsec, off),
                u32_at(tsec, off + 4),
                u32_at(tsec, off + 8),
            ) else {
                return Err(bad("truncated type record"));
            };
            off += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kflag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for m in 0..vlen {
                        let at = off + m * 12;
                        let (Some(n), Some(t), Some(o)) =
                            (u32_at(tsec, at), u32_at(tsec, at + 4), u32_at(tsec, at + 8))
                        else {
                            return Err(bad("truncated member record"));
                        };
                        // With kind_flag the low 24 bits are the bit offset, the high 8 the
                        // bitfield size.
                        members.push((n, t, if kflag { o & 0x00ff_ffff } else { o }));
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_PTR | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | 12
                | 16 | KIND_TYPE_TAG => 0,
                _ => return Err(bad("unknown type kind")),
            };
            off += extra;
            types.push(Type {
                kind,
                name,
                size_or_type,
                members,
            });
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    fn get(&self, id: u32) -> Option<&Type> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    /// The type behind typedefs and qualifiers (bounded: a loop in bad data ends).
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type;
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Size in bytes of type `id` (ints, structs, unions, arrays of those), if known.
    fn size(&self, id: u32) -> Option<u32> {
        let t = self.resolve(id)?;
        match t.kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => Some(t.size_or_type),
            _ => None,
        }
    }

    /// Byte offset of member `member` of struct `strukt`, looking through anonymous struct and
    /// union members as C does; the member must be `size` bytes and byte-aligned.
    pub fn member_offset(&self, strukt: &str, member: &str, size: u32) -> Result<u32, BtfError> {
        let s = self
            .types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && self.name(t.name) == strukt.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        self.find(s, member.as_bytes(), size, 0)
            .filter(|bits| bits % 8 == 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
                size,
            })
    }

    fn find(&self, t: &Type, member: &[u8], size: u32, depth: u32) -> Option<u32> {
        if depth > MAX_NESTING {
            return None;
        }
        for &(name, ty, bits) in &t.members {
            if name == 0 {
                let Some(inner) = self.resolve(ty) else {
                    continue;
                };
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                    if let Some(b) = self.find(inner, member, size, depth + 1) {
                        return bits.checked_add(b);
                    }
                }
            } else if self.name(name) == member && self.size(ty) == Some(size) {
                return Some(bits);
            }
        }
        None
    }
}

/// The offsets the socket tracepoints read in `struct sock` (which starts with `struct
/// sock_common`, include/net/sock.h), from the kernel's BTF. Every field is checked,
/// including the leading IPv4 ones the program could assume.
pub fn sock_offsets(btf: &Btf) -> Result<SockOffsets, BtfError> {
    let off = |member: &str, size: u32| btf.member_offset("sock_common", member, size);
    Ok(SockOffsets {
        daddr: off("skc_daddr", 4)?,
        rcv_saddr: off("skc_rcv_saddr", 4)?,
        dport: off("skc_dport", 2)?,
        num: off("skc_num", 2)?,
        family: off("skc_family", 2)?,
        v6_daddr: off("skc_v6_daddr", 16)?,
        v6_rcv_saddr: off("skc_v6_rcv_saddr", 16)?,
        _pad: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little BTF blob: `unsigned short`, `unsigned int`, `struct in6_addr` (16 bytes), a
    /// typedef, an anonymous struct inside an anonymous union, and `struct sock_common` with
    /// its IPv6 address after a pointer, as in the kernel.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Builder {
            Builder {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }
        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }
        fn push(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, st: u32) -> u32 {
            let n = self.s(name);
            let info = (kind << 24) | vlen | if kflag { 1 << 31 } else { 0 };
            for v in [n, info, st] {
                self.types.extend_from_slice(&v.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.push(name, KIND_INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }
        fn composite(&mut self, kind: u32, name: &str, size: u32, m: &[(&str, u32, u32)]) -> u32 {
            let id = self.push(name, kind, m.len() as u32, false, size);
            for &(mn, ty, bits) in m {
                let n = self.s(mn);
                for v in [n, ty, bits] {
                    self.types.extend_from_slice(&v.to_le_bytes());
                }
            }
            id
        }
        fn finish(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for v in [
                HEADER_LEN as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let u16_ = b.int("short unsigned int", 2);
        let u32_ = b.int("unsigned int", 4);
        let be32 = b.push("__be32", KIND_TYPEDEF, 0, false, u32_);
        let ptr = b.push("", KIND_PTR, 0, false, 0);
        // An enum with two values (8 bytes each) before the structs: the walk must skip it.
        let _e = b.push("e", KIND_ENUM, 2, false, 4);
        b.types.extend_from_slice(&[0u8; 16]);
        let in6 = b.composite(KIND_STRUCT, "in6_addr", 16, &[("u6", u32_, 0)]);
        let pair = b.composite(
            KIND_STRUCT,
            "",
            8,
            &[("skc_daddr", be32, 0), ("skc_rcv_saddr", be32, 32)],
        );
        let u = b.composite(
            KIND_UNION,
            "",
            8,
            &[("skc_addrpair", u32_, 0), ("", pair, 0)],
        );
        let ports = b.composite(
            KIND_STRUCT,
            "",
            4,
            &[("skc_dport", u16_, 0), ("skc_num", u16_, 16)],
        );
        let vol = b.push("", KIND_VOLATILE, 0, false, u16_);
        b.composite(
            KIND_STRUCT,
            "sock_common",
            96,
            &[
                ("", u, 0),
                ("skc_hash", u32_, 64),
                ("", ports, 96),
                ("skc_family", vol, 128),
                ("skc_prot", ptr, 192),
                ("skc_v6_daddr", in6, 256),
                ("skc_v6_rcv_saddr", in6, 384),
            ],
        );
        b.finish()
    }

    #[test]
    fn offsets_are_found_through_anonymous_members_and_typedefs() {
        let btf = Btf::parse(&sample()).unwrap();
        let o = sock_offsets(&btf).unwrap();
        assert_eq!((o.daddr, o.rcv_saddr, o.dport, o.num), (0, 4, 12, 14));
        assert_eq!(o.family, 16);
        assert_eq!((o.v6_daddr, o.v6_rcv_saddr), (32, 48));
    }

    #[test]
    fn wrong_sizes_missing_members_and_bad_data_are_errors() {
        let btf = Btf::parse(&sample()).unwrap();
        assert!(matches!(
            btf.member_offset("sock_common", "skc_v6_daddr", 4),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("sock_common", "skc_nothing", 4),
            Err(BtfError::NoMember { .. })
        ));
        assert_eq!(
            btf.member_offset("sock", "skc_daddr", 4),
            Err(BtfError::NoStruct("sock".into()))
        );
        let data = sample();
        assert!(Btf::parse(&data[..HEADER_LEN + 10]).is_err());
        assert!(Btf::parse(&data[..10]).is_err());
        let mut swapped = data.clone();
        swapped.swap(0, 1);
        assert!(Btf::parse(&swapped).is_err());
    }

    /// The running kernel's own BTF gives the layout the program's IPv4 path was written
    /// against (leading fields fixed), and IPv6 addresses after them.
    #[test]
    fn the_running_kernels_sock_common_is_read() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{VMLINUX_BTF} missing on CI"
            );
            eprintln!("skipped: {VMLINUX_BTF} missing (kernel without CONFIG_DEBUG_INFO_BTF)");
            return;
        }
        let o = sock_offsets(&Btf::vmlinux().unwrap()).unwrap();
        assert_eq!((o.daddr, o.rcv_saddr, o.dport, o.num), (0, 4, 12, 14));
        assert_eq!(o.family, 16);
        assert!(o.v6_daddr > o.family && o.v6_rcv_saddr == o.v6_daddr + 16);
    }
}
