#!/usr/bin/env python3
"""Bundle fixtures made independently of behavry, for tests/it/bundle.rs.

Writes bundles laid out as `opa build -b` writes them (/data.json with every data document merged
at its directory's path, /<path>.rego, /.manifest, /.signatures.json) and signs them as `opa sign`
does: a Python port of OPA's v1/bundle/hash.go for the file digests and PyJWT + cryptography for
the JWS. behavry's verifier is checked against code it does not share. It also checks a bundle
behavry built (`check`), so the two implementations agree in both directions.

  make.py keygen ALG PRIVATE.pem PUBLIC.pem
  make.py bundle SRC_DIR OUT [--key PRIVATE.pem --alg ALG --keyid ID --scope S]
                             [--tamper extra|drop|edit-data|hs256|none|two]
                             [--raw NAME=TEXT]... [--symlink NAME] [--duplicate NAME]
  make.py check BUNDLE PUBLIC.pem ALG [--scope S]      (exit 0 when it verifies)
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


# --- a port of OPA's v1/bundle/hash.go -------------------------------------------------------

class Number(str):
    """A JSON number kept as written (OPA decodes with UseNumber)."""


def go_string(s):
    """Go's encoding/json string encoding with SetEscapeHTML(false), Go >= 1.22."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == '\\':
            out.append('\\\\')
        elif ch == '\n':
            out.append('\\n')
        elif ch == '\r':
            out.append('\\r')
        elif ch == '\t':
            out.append('\\t')
        elif ch == '\b':
            out.append('\\b')
        elif ch == '\f':
            out.append('\\f')
        elif c < 0x20 or c in (0x2028, 0x2029):
            out.append('\\u%04x' % c)
        else:
            out.append(ch)
    out.append('"')
    return ''.join(out)


def walk(v, h):
    if isinstance(v, dict):
        h.update(b'{')
        for i, key in enumerate(sorted(v, key=lambda k: k.encode())):
            if i:
                h.update(b',')
            h.update(go_string(key).encode())
            h.update(b':')
            walk(v[key], h)
        h.update(b'}')
    elif isinstance(v, list):
        h.update(b'[')
        for i, e in enumerate(v):
            if i:
                h.update(b',')
            walk(e, h)
        h.update(b']')
    elif isinstance(v, Number):
        h.update(v.encode())
    elif isinstance(v, str):
        h.update(go_string(v).encode())
    elif v is True:
        h.update(b'true')
    elif v is False:
        h.update(b'false')
    elif v is None:
        h.update(b'null')
    else:
        raise TypeError(type(v))


def parse(text):
    return json.loads(text, parse_int=Number, parse_float=Number)


def file_hash(name, data):
    """VerifyBundleFile: structured documents over their canonical form, others as bytes."""
    h = hashlib.sha256()
    if os.path.basename(name) in ('data.json', 'data.yaml', '.manifest'):
        walk(parse(data), h)
    else:
        h.update(data)
    return h.hexdigest()


# --- keys ------------------------------------------------------------------------------------

def keygen(alg, private_path, public_path):
    if alg.startswith('ES'):
        key = ec.generate_private_key(ec.SECP256R1() if alg == 'ES256' else ec.SECP384R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(private_path, 'wb') as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(public_path, 'wb') as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


# --- opa build -b ----------------------------------------------------------------------------

def merge(into, value, at):
    for k, v in value.items():
        if k in into:
            if not (isinstance(into[k], dict) and isinstance(v, dict)):
                raise SystemExit('data conflict at ' + '.'.join(at + [k]))
            merge(into[k], v, at + [k])
        else:
            into[k] = v


def layout(src):
    """The files `opa build -b SRC` writes, in its order (manifest last)."""
    data, modules, manifest, raw_data = {}, [], None, []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src).replace(os.sep, '/')
            raw = open(path, 'rb').read()
            if rel == '.manifest':
                manifest = json.loads(raw)
            elif name == 'data.json':
                raw_data.append((rel, raw))
                tree = json.loads(raw)
                for seg in reversed(rel.split('/')[:-1]):
                    tree = {seg: tree}
                merge(data, tree, [])
            elif name.endswith('.rego'):
                modules.append((rel, raw))
    if [r for r, _ in raw_data] == ['data.json']:
        # One document at the root: kept as written (spacing, key order, numbers), so the
        # verifier's canonical form is what is checked.
        files = [('data.json', raw_data[0][1])]
    else:
        files = [('data.json', json.dumps(data, separators=(',', ':')).encode())]
    files += modules
    if manifest is None:
        manifest = {'revision': '', 'roots': ['']}
    manifest.setdefault('rego_version', 1)
    return files, ('.manifest', json.dumps(manifest).encode())


def token(files, key_path, alg, keyid, scope, tamper):
    payload = {'files': [{'name': n, 'hash': file_hash(n, b), 'algorithm': 'SHA-256'}
                         for n, b in files],
               'iat': int(time.time()), 'iss': 'make.py'}
    if keyid:
        payload['keyid'] = keyid
    if scope is not None:
        payload['scope'] = scope
    headers = {'kid': keyid} if keyid else None
    if tamper == 'hs256':
        return jwt.encode(payload, 'shared-secret-on-every-laptop', algorithm='HS256', headers=headers)
    if tamper == 'none':
        return jwt.encode(payload, None, algorithm='none', headers=headers)
    key = serialization.load_pem_private_key(open(key_path, 'rb').read(), password=None)
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def write_tar(out, entries, symlink=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz', format=tarfile.GNU_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo('/' + name if not name.startswith('..') else name)
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo('/' + symlink)
            info.type, info.linkname = tarfile.SYMTYPE, '/etc/passwd'
            tar.addfile(info)
    with open(out, 'wb') as f:
        f.write(buf.getvalue())


def bundle(args):
    files, manifest = layout(args.src)
    entries = list(files)
    if args.key or args.tamper in ('hs256', 'none'):
        signed = files + [manifest]
        if args.tamper == 'drop':
            entries = entries[1:]  # data.json listed but absent
        tok = token(signed, args.key, args.alg, args.keyid, args.scope, args.tamper)
        sigs = [tok, tok] if args.tamper == 'two' else [tok]
        entries.append(('.signatures.json', json.dumps({'signatures': sigs}, indent=1).encode()))
    entries.append(manifest)
    if args.tamper == 'extra':
        entries.append(('extra.rego', b'package extra\n'))
    if args.tamper == 'edit-data':
        entries = [(n, b.replace(b'}', b',"sneaked":true}', 1) if n == 'data.json' else b)
                   for n, b in entries]
    for raw in args.raw:
        name, _, text = raw.partition('=')
        entries.append((name, text.encode()))
    if args.duplicate:
        entries += [e for e in entries if e[0] == args.duplicate]
    write_tar(args.out, entries, args.symlink)


# --- checking a bundle behavry built ---------------------------------------------------------

def check(args):
    with tarfile.open(args.bundle, 'r:gz') as tar:
        files = {}
        for m in tar.getmembers():
            if not m.isfile():
                raise SystemExit(f'{m.name}: not a regular file')
            if not m.name.startswith('/'):
                raise SystemExit(f'{m.name}: opa build names start with /')
            files[m.name[1:]] = tar.extractfile(m).read()
    sigs = json.loads(files.pop('.signatures.json'))['signatures']
    if len(sigs) != 1:
        raise SystemExit('expected one signature')
    pub = serialization.load_pem_public_key(open(args.public, 'rb').read())
    claims = jwt.decode(sigs[0], pub, algorithms=[args.alg])
    if claims.get('scope', '') != (args.scope or ''):
        raise SystemExit('scope mismatch')
    listed = {f['name']: f for f in claims['files']}
    for name, data in files.items():
        want = listed.pop(name, None)
        if want is None:
            raise SystemExit(f'{name}: not in the signature')
        if want['algorithm'] != 'SHA-256' or want['hash'] != file_hash(name, data):
            raise SystemExit(f'{name}: digest mismatch')
    if listed:
        raise SystemExit(f'listed but absent: {sorted(listed)}')
    print('verified', sorted(files))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest='cmd', required=True)
    k = sub.add_parser('keygen')
    k.add_argument('alg')
    k.add_argument('private')
    k.add_argument('public')
    b = sub.add_parser('bundle')
    b.add_argument('src')
    b.add_argument('out')
    b.add_argument('--key')
    b.add_argument('--alg', default='ES256')
    b.add_argument('--keyid')
    b.add_argument('--scope')
    b.add_argument('--tamper')
    b.add_argument('--raw', action='append', default=[])
    b.add_argument('--symlink')
    b.add_argument('--duplicate')
    c = sub.add_parser('check')
    c.add_argument('bundle')
    c.add_argument('public')
    c.add_argument('alg')
    c.add_argument('--scope')
    a = p.parse_args()
    if a.cmd == 'keygen':
        keygen(a.alg, a.private, a.public)
    elif a.cmd == 'bundle':
        bundle(a)
    else:
        check(a)


if __name__ == '__main__':
    sys.exit(main())
