import cf from 'cloudfront';
async function connectionHandler(connection) {
    const kvsHandle = cf.kvs();
    const serialNumber = connection.clientCertificate.certificates.leaf.serialNumber.replace(/:/g, "");
    const isRevoked = await kvsHandle.exists(serialNumber);
    if (isRevoked) {
        connection.logCustomData(`Revoked certificate: ${serialNumber}`);
        return connection.deny();
    }
    connection.logCustomData(`Valid certificate: ${serialNumber}`);
    return connection.allow();
}
