import Foundation
import Testing

@testable import KilnModel

@Suite("Provider settings")
struct ProviderSettingsTests {
    @Test("aws settings encode as the sorted JSON object that build keys recorded before they were typed")
    func awsJSONIsCanonical() {
        var aws = AWSSettings()
        aws.set(.region, text: "eu-west-1")
        aws.set(.instanceType, text: "t3.small")
        aws.set(.securityGroupIDs, list: ["sg-1", "sg-2"])
        #expect(
            ProviderSettings.aws(aws).json
                == #"{"instance_type":"t3.small","region":"eu-west-1","security_group_ids":["sg-1","sg-2"]}"#)
        #expect(ProviderSettings.aws(AWSSettings()).json == "{}")
    }

    @Test("every aws key is one a template may write, and decodes back into the same settings")
    func awsKeysRoundTrip() throws {
        var aws = AWSSettings()
        for key in AWSSettings.Key.allCases {
            if key.isList { aws.set(key, list: [key.rawValue]) } else { aws.set(key, text: key.rawValue) }
        }
        let json = ProviderSettings.aws(aws).json
        for key in AWSSettings.Key.allCases { #expect(json.contains("\"\(key.rawValue)\"")) }
        #expect(try JSONDecoder().decode(AWSSettings.self, from: Data(json.utf8)) == aws)
    }

    @Test("only a qemu build has qemu settings; a plugin's name and JSON are kept as given")
    func names() {
        #expect(ProviderSettings.qemu(QemuSettings(memoryMiB: 2048)).qemu?.memoryMiB == 2048)
        #expect(ProviderSettings.aws(AWSSettings()).qemu == nil)
        let plugin = ProviderSettings.plugin(name: "chroot", json: #"{"depth":3}"#)
        #expect(plugin.name == "chroot" && plugin.json == #"{"depth":3}"# && plugin.qemu == nil)
        #expect(ProviderChoice().name == "qemu")
    }
}
